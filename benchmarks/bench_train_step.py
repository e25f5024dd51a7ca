"""Seconds per training step of the BPE model's recipe (issue 19, item 3): fp32 against a bf16 autocast forward.

Usage: python benchmarks/bench_train_step.py [--steps 20] [--repeats 3] [--threads 2] [--device cpu]

Builds the compact training model of `benchmarks/train_bio_bpe.py` (4 layers × 256 over the world's vocabulary
rows), takes the first batches of its data stream (16 × 256 tokens) and times `--steps` AdamW steps per variant,
the variants interleaved `--repeats` times from the same initial weights; prints the fastest time per step of each,
the ratio to fp32, and the mean loss over the timed steps (the same batches, so the two losses are comparable).
"""

from __future__ import annotations

import argparse
import copy
import time

import torch

from align_lens.adapter import build_model
from align_lens.worlds.base_model import train_step
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.bpe_model import batches, gpt2_config, vocab_lookup
from align_lens.worlds.gpt2_tokenizer import load_gpt2_tokenizer


def timed_steps(model, data: list, bf16: bool, device: str) -> tuple[float, float]:
    """(seconds per step, mean loss) of one AdamW step (`train_step`, the trainer's) per batch of `data` on a copy of
    `model`."""
    model = copy.deepcopy(model).train()
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, betas=(0.9, 0.98), weight_decay=0.01)
    losses = []
    t0 = time.perf_counter()
    for tokens, target in data:
        losses.append(train_step(model, opt, tokens.to(device), target.to(device), 1.0, bf16).item())
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / len(data), sum(losses) / len(losses)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    world, tokenizer = BpeBioWorld(n_people=2000, seed=0, extra_wordings=7), load_gpt2_tokenizer()
    rows = world.vocabulary_ids(tokenizer)
    stream = batches(world, tokenizer, vocab_lookup(rows), 0, 256, 16, 0, 0)
    data = [next(stream)[2:] for _ in range(args.steps + 1)]
    torch.manual_seed(0)
    model = build_model(gpt2_config(4, 256, 32, 256, d_vocab=len(rows)), device=args.device)
    timed_steps(model, data[:1], False, args.device)  # warm-up
    best: dict[str, tuple[float, float]] = {}
    for _ in range(args.repeats):
        for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
            s, loss = timed_steps(model, data[1:], bf16, args.device)
            best[name] = min(best.get(name, (s, loss)), (s, loss))
    base = best["fp32"][0]
    print(f"{args.steps} steps of 16 × 256 tokens, {args.threads} threads, {args.device}; fastest of {args.repeats}")
    for name, (s, loss) in best.items():
        print(f"{name:<14} {s:.3f} s/step ({s / base:.2f}× fp32)  mean loss {loss:.4f}")


if __name__ == "__main__":
    main()
