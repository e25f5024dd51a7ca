"""`align-lens grokking` end to end (train the implicit model, then Stage 1 + Stage 2 per checkpoint): wall and
CPU time against the 10-minute budget on 2 cores, and the crossings it finds.

Usage: python benchmarks/bench_grokking.py [--out runs/bench_grokking] [--steps 4000] [--threads 2]
Goal (issue 11): ≤ 600 s on 2 cores; held-out accuracy rising from < 0.2 to > 0.9 across the checkpoints.
"""

from __future__ import annotations

import argparse
import json
import resource
import time

BUDGET_S = 600.0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="runs/bench_grokking")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--checkpoint-every", type=int, default=250)
    p.add_argument("--threads", type=int, default=2)
    a = p.parse_args()
    from align_lens.worlds.grokking import GrokkingConfig, run_grokking

    t0 = time.time()
    rec = run_grokking(
        GrokkingConfig(out_dir=a.out, steps=a.steps, checkpoint_every=a.checkpoint_every, threads=a.threads)
    )
    wall = time.time() - t0
    cpu = resource.getrusage(resource.RUSAGE_SELF)
    cpu_s = cpu.ru_utime + cpu.ru_stime
    held = [r["heldout"] for r in rec["rows"]]
    print(json.dumps({"crossings": rec["crossings"], "wall_s": rec["wall_s"]}, indent=1))
    print(f"wall {wall:.0f} s = {wall / BUDGET_S:.2f} x budget; CPU {cpu_s:.0f} s = {cpu_s / BUDGET_S:.2f} x budget")
    print(f"held-out accuracy: first {held[0]:.3f}, last {held[-1]:.3f} (goal: < 0.2 then > 0.9)")


if __name__ == "__main__":
    main()
