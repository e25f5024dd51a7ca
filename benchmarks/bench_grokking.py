"""`align-lens grokking --quick` end to end (train the implicit model, then every reader and the bridge swaps per
checkpoint): wall and CPU time against the 10-minute budget on 2 cores, and the plateau it finds.

Usage: python benchmarks/bench_grokking.py [--out runs/bench_grokking] [--threads 1]
Goal (issue 21): ≤ 600 s on 2 cores; training compositions fitted (≥ 0.99) while held-out ones stay ≤ 0.2.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from dataclasses import replace

BUDGET_S = 600.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bench_grokking")
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    from align_lens.worlds.grokking import QUICK, GrokkingConfig, run_grokking

    t0 = time.time()
    rec = run_grokking(replace(GrokkingConfig(out_dir=a.out, threads=a.threads), **QUICK))
    wall = time.time() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    for seed, r in rec["seeds"].items():
        held = [row["heldout"] for row in r["rows"]]
        print(f"seed {seed}: plateau {json.dumps(r['plateau'])}; held-out first {held[0]:.3f}, last {held[-1]:.3f}")
    print(f"wall {wall:.0f} s = {wall / BUDGET_S:.2f} x budget; CPU {cpu_s:.0f} s = {cpu_s / BUDGET_S:.2f} x budget")


if __name__ == "__main__":
    main()
