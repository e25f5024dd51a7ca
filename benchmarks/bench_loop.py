"""Stage-2 steps back to back, as in `align`'s loop (no synchronise between steps), against a plain SAELens step.

Usage: python benchmarks/bench_loop.py [--device cuda] [--sizes 16384 131072] [--steps 50]

For each d_sae: a plain SAELens `StandardTrainingSAE` step, the Stage-2 step (loss terms read back every
`LOG_EVERY` steps, as `align` does) eager and with the objective under `torch.compile` (`AlignConfig.compile`),
d_in 768, batch 1,024 (768 labelled rows). Prints ms per step and the ratios to the plain step, and the seconds the
first compiled step took. benchmarks/bench_scale.py times single synchronised steps instead.
"""

from __future__ import annotations

import argparse
import time

import torch
from bench_scale import BATCH, D_IN, N_CONCEPTS
from sae_lens import StandardSAE, StandardSAEConfig
from sae_lens.saes.sae import TrainStepInput
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig

from align_lens.saes.aligned import aligned_from_sae
from align_lens.training import losses
from align_lens.training.config import LOG_EVERY, PendingTerms
from align_lens.training.distributed import Replica
from align_lens.training.stage2 import Stage2Objective

WEIGHTS = dict(reconstruction=1.0, sparsity=1.0, binding=1.0, decorrelation=0.01, value=0.0, silence=0.3)


def plain_step_fn(d_sae: int, x, device: str):
    sae = StandardTrainingSAE(StandardTrainingSAEConfig(d_in=D_IN, d_sae=d_sae, l1_coefficient=1.0, device=device))
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

    def step():
        inp = TrainStepInput(
            sae_in=x, coefficients={"l1": 1.0}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False
        )
        sae.training_forward_pass(inp).loss.backward()
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        opt.step()
        opt.zero_grad()

    return step


def stage2_step_fn(d_sae: int, x, y, device: str, compiled: bool):
    torch.manual_seed(0)
    base = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=d_sae - N_CONCEPTS, device=device))
    aligned = aligned_from_sae(base, [f"c{i}" for i in range(N_CONCEPTS)], device=device)
    params = [p for p in aligned.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-4)
    objective = Stage2Objective(
        aligned, None, binding="mse_onehot", variance=1.0, decorrelation=losses.decorrelation_loss
    )
    forward = torch.compile(objective) if compiled else objective
    pending, done = PendingTerms(), [0]

    def step():  # the body of align's loop
        terms = forward(x, y)
        loss = torch.stack([WEIGHTS[k] * v for k, v in terms.items()]).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        pending.add(done[0], terms | {"total": loss})
        done[0] += 1
        if done[0] % LOG_EVERY == 0:
            pending.flush(Replica().record)

    return step


def per_step(fn, steps: int, device: str) -> float:
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    for _ in range(5):
        fn()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        fn()
    sync()
    return (time.perf_counter() - t) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[16_384, 131_072])
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    name = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else "CPU"
    print(f"{name}, d_in {D_IN}, batch {BATCH}, {args.steps} steps back to back after 5 warm-up steps")
    print("| d_sae | plain ms | Stage 2 eager ms (ratio) | Stage 2 compiled ms (ratio) | first compiled step s |")
    print("|---|---|---|---|---|")
    for d_sae in args.sizes:
        torch.manual_seed(0)
        x = torch.randn(BATCH, D_IN, device=args.device)
        y = torch.randint(0, N_CONCEPTS, (BATCH * 3 // 4,), device=args.device)
        compiled = stage2_step_fn(d_sae, x, y, args.device, True)
        t = time.perf_counter()
        compiled()
        first = time.perf_counter() - t
        plain = per_step(plain_step_fn(d_sae, x, args.device), args.steps, args.device)
        eager = per_step(stage2_step_fn(d_sae, x, y, args.device, False), args.steps, args.device)
        comp = per_step(compiled, args.steps, args.device)
        print(
            f"| {d_sae:,} | {plain * 1e3:.2f} | {eager * 1e3:.2f} ({eager / plain:.3f}×) "
            f"| {comp * 1e3:.2f} ({comp / plain:.3f}×) | {first:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
