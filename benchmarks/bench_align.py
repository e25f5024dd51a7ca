"""Stage-2 step time and peak memory: align_lens' decorrelation vs a naive full-covariance one.

Each (d_sae, formulation) runs in a fresh subprocess so its peak RSS is its own.
Usage: python benchmarks/bench_align.py [--sizes 4096 16384 65536] [--steps 3]
Goal (issue 3): 65k latents in under 8 GB, and at least 10x the naive step speed at 16k.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

D_IN, BATCH, N_CONCEPTS = 768, 1024, 6
NAIVE_LIMIT_GB = 12.0  # the naive (d_sae x d_sae) matrix alone must fit comfortably in 24 GB


def one_run(d_sae: int, naive: bool, steps: int) -> dict:
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    from align_lens.saes.aligned import aligned_from_sae
    from align_lens.training import losses
    from align_lens.training.stage2 import stage2_terms

    torch.manual_seed(0)
    torch.set_num_threads(2)
    base = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=d_sae - N_CONCEPTS))
    aligned = aligned_from_sae(base, [f"c{i}" for i in range(N_CONCEPTS)])
    opt = torch.optim.AdamW(aligned.parameters(), lr=1e-4)
    x = torch.randn(BATCH, D_IN)
    y = torch.randint(0, N_CONCEPTS, (BATCH,))
    decor = losses.naive_decorrelation_loss if naive else losses.decorrelation_loss
    times = []
    for _ in range(steps + 1):  # first step is warm-up
        t = time.perf_counter()
        terms = stage2_terms(aligned, x, y, decorrelation=decor)
        loss = sum(terms.values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    term = []
    zc = torch.rand(BATCH, N_CONCEPTS)
    zf = torch.randn(BATCH, d_sae - N_CONCEPTS).relu().requires_grad_(True)
    for _ in range(steps + 1):
        t = time.perf_counter()
        decor(zc, zf).backward()
        term.append(time.perf_counter() - t)
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    median = lambda xs: sorted(xs[1:])[len(xs[1:]) // 2]  # noqa: E731
    return {"d_sae": d_sae, "naive": naive, "step_s": median(times), "term_s": median(term), "peak_gb": peak_gb}


def spawn(d_sae: int, naive: bool, steps: int) -> dict:
    if naive and (d_sae**2 * 4 * 3) / 2**30 > NAIVE_LIMIT_GB:
        return {
            "d_sae": d_sae,
            "naive": True,
            "step_s": None,
            "peak_gb": None,
            "skipped": f"naive needs > {NAIVE_LIMIT_GB:.0f} GB for its {d_sae}x{d_sae} matrices",
        }
    out = subprocess.run(
        [sys.executable, __file__, "--one", str(d_sae), str(int(naive)), str(steps)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[4096, 16384, 65536])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one_run(int(args.one[0]), bool(int(args.one[1])), int(args.one[2]))))
        return
    print(f"Stage-2 step, d_in={D_IN}, batch={BATCH}, {N_CONCEPTS} concepts, 2 threads (median of {args.steps} steps)")
    print("step = whole Stage-2 step; term = the decorrelation loss alone, forward + backward")
    print(
        f"{'d_sae':>7} | {'ours s/step':>11} {'term s':>8} {'peak GB':>8} | {'naive s/step':>12} {'term s':>8} {'peak GB':>8} | step x | term x"
    )
    for d in args.sizes:
        ours, naive = spawn(d, False, args.steps), spawn(d, True, args.steps)
        left = f"{d:>7} | {ours['step_s']:>11.3f} {ours['term_s']:>8.4f} {ours['peak_gb']:>8.2f}"
        if naive["step_s"] is None:
            print(f"{left} | naive skipped: {naive['skipped']}")
        else:
            step_x, term_x = naive["step_s"] / ours["step_s"], naive["term_s"] / ours["term_s"]
            print(
                f"{left} | {naive['step_s']:>12.3f} {naive['term_s']:>8.4f} {naive['peak_gb']:>8.2f} | {step_x:>5.1f}x | {term_x:>5.0f}x"
            )


if __name__ == "__main__":
    main()
