"""Train the GPT-2-shaped model on the BPE biography world (issue 19) and print its accuracy table.

Usage: python benchmarks/train_bio_bpe.py --out DIR [--device cuda]

The shipped model (align_lens/worlds/data/bio_bpe_model, docs/bio_bpe.md) is `--out DIR --bf16 --eval-every 500`:
the defaults (4 layers × 256, 12 training question wordings per relation (`--extra-wordings 7`), one training
question per person and relation per epoch, AdamW lr 2e-3, 4,500 steps of 16 × 256 tokens) with the forward under
bf16 autocast: ~50 min on 2 CPU cores (~80–96 min without `--bf16`).

Resumable: rerun the same command after an interruption. Writes the compact-storage model folder, world.json,
train_log.jsonl and eval.json (exact greedy whole-answer accuracy; see align_lens.worlds.bpe_model).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.bpe_model import EVAL_FILE, EVAL_SETS, train_bpe_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-people", type=int, default=2000)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--qa-per-relation", type=int, default=1, help="training questions per person and relation")
    ap.add_argument("--extra-wordings", type=int, default=7, help="training question wordings beyond the five (0–7)")
    ap.add_argument("--steps", type=int, default=4500)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--weight-decay", type=float, default=0.01)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--checkpoint-every", type=int, default=200)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast forward (weights and optimiser fp32)")
    ap.add_argument("--eval-every", type=int, default=250, help="steps between the training log's evaluations")
    args = ap.parse_args()
    train_bpe_model(
        BpeBioWorld(
            n_people=args.n_people,
            seed=args.seed,
            qa_per_relation=args.qa_per_relation,
            extra_wordings=args.extra_wordings,
        ),
        args.out,
        n_layers=args.layers,
        d_model=args.d_model,
        steps=args.steps,
        lr=args.lr,
        warmup=args.warmup,
        seed=args.seed,
        threads=args.threads,
        batch_size=args.batch_size,
        weight_decay=args.weight_decay,
        device=args.device,
        eval_every=args.eval_every,
        bf16=args.bf16,
        eval_examples_max=300,
        checkpoint_every=args.checkpoint_every,
    )
    table = json.loads((Path(args.out) / EVAL_FILE).read_text())
    print("set        first_token  full")
    for s in EVAL_SETS:
        print(f"{s:<10} {table[s]['all']['first_token']:.3f}        {table[s]['all']['full']:.3f}")


if __name__ == "__main__":
    main()
