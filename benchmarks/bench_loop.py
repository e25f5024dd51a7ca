"""Stage-2 steps back to back, `align`'s own (`Stage2Trainer.step`, no synchronise between steps), against a plain
SAELens step.

Usage: python benchmarks/bench_loop.py [--device cuda] [--sizes 16384 131072] [--steps 50]

For each d_sae: a plain SAELens `StandardTrainingSAE` step, the Stage-2 step (loss terms read back every
`LOG_EVERY` steps) eager and with the objective under `torch.compile` (`AlignConfig.compile`), d_in 768,
batch 1,024 (768 labelled rows + 256 unlabelled rows). Prints ms per step and the ratios to the plain step, and the seconds the
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

from align_lens import AlignConfig, Ontology, Runtime
from align_lens.training.stage2 import Stage2Trainer


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
    """`Stage2Trainer.step`, the step `align` takes: the first len(y) rows of `x` labelled `y`, the rest unlabelled
    (one batch of each per step; the loss terms are read back every `LOG_EVERY` steps)."""
    torch.manual_seed(0)
    n, names = len(y), [f"c{i}" for i in range(N_CONCEPTS)]
    base = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=d_sae - N_CONCEPTS, device=device))
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept=names[c]) for i, c in enumerate(y.tolist())], names)
    runtime = Runtime(device=device, progress=False)
    config = AlignConfig(steps=10**6, batch_size=n, unlabelled_batch_size=len(x) - n, compile=compiled, runtime=runtime)
    trainer = Stage2Trainer(base, onto, activations=x[:n], labels=y, unlabelled=x[n:], config=config)
    idx = torch.arange(n, device=device)
    return lambda: trainer.step(idx)


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
