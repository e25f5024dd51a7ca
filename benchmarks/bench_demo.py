"""Wall time of the full `align-lens demo` against its 5-minute budget on this machine.

Usage: python benchmarks/bench_demo.py [--out runs/bench_demo]
Prints each step's seconds, the total, and total / budget (must be ≤ 1.0).
"""

from __future__ import annotations

import argparse
import time

from align_lens.worlds.demo import DemoConfig, format_summary, run_demo

BUDGET_S = 300.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_demo")
    args = ap.parse_args()
    t = time.perf_counter()
    record = run_demo(DemoConfig(out_dir=args.out, overwrite=True, progress=False))
    wall = time.perf_counter() - t
    print(format_summary(record, args.out))
    for step, secs in record["timings"].items():
        print(f"  {step:<15} {secs:7.1f} s")
    print(
        f"demo wall time {wall:.1f} s; budget {BUDGET_S:.0f} s; ratio {wall / BUDGET_S:.2f} (≤ 1.00 meets the budget)"
    )


if __name__ == "__main__":
    main()
