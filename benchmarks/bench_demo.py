"""Wall time of the full `align-lens demo` against its 5-minute budget on this machine.

Usage: python benchmarks/bench_demo.py [--world bio | bio-bpe] [--out runs/bench_demo]
Prints each step's seconds, the total wall and CPU time, and each / budget (must be ≤ 1.0). `--world bio-bpe` times
`align-lens demo --world bio-bpe` (the shipped GPT-2-shaped model, `bpe_demo_config`).
"""

from __future__ import annotations

import argparse
import resource
import time

from align_lens.worlds.demo import DemoConfig, bpe_demo_config, format_summary, run_demo

BUDGET_S = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_demo")
    ap.add_argument("--world", choices=("bio", "bio-bpe"), default="bio")
    args = ap.parse_args()
    make = bpe_demo_config if args.world == "bio-bpe" else DemoConfig
    t = time.perf_counter()
    record = run_demo(make(out_dir=args.out, overwrite=True, progress=False))
    wall = time.perf_counter() - t
    use = resource.getrusage(resource.RUSAGE_SELF)
    cpu = use.ru_utime + use.ru_stime
    print(format_summary(record, args.out))
    for step, secs in record["timings"].items():
        print(f"  {step:<15} {secs:7.1f} s")
    print(
        f"demo ({args.world}) wall time {wall:.1f} s, CPU {cpu:.1f} s; budget {BUDGET_S:.0f} s; "
        f"ratio {wall / BUDGET_S:.2f} wall, {cpu / BUDGET_S:.2f} CPU / 2 cores {cpu / 2 / BUDGET_S:.2f} (≤ 1.00 meets the budget)"
    )


if __name__ == "__main__":
    main()
