"""Search for a grokking plateau in the implicit two-hop format (issue 21, item 1).

One call trains one setting (`train_two_hop_model`, implicit format, compact phrasing, 1 thread: bit-reproducible)
into `--out`; the same call with a larger `--steps` extends a finished constant-lr run. `--table DIR ...` prints the
plateau table of finished or running settings from their train logs.

    python benchmarks/grokking_search.py --out runs/search/phi3_wd1 --n-train 6000 --weight-decay 1.0 --steps 10000
    python benchmarks/grokking_search.py --out runs/search/phi9_init4 --n-train 18000 --init-scale 4 --steps 10000
    python benchmarks/grokking_search.py --out runs/search/phi9_init8_cos --n-train 18000 --init-scale 8 --lr-final 0.1 --steps 20000
    python benchmarks/grokking_search.py --out runs/search/small_phi7 --n-entities 50 --n-relations 10 --n-heldout 500 --n-train 3500 --steps 12000
    python benchmarks/grokking_search.py --out runs/search/small_phi4_init1 --n-entities 50 --n-relations 10 --n-heldout 500 --n-train 2000 --steps 30000
    python benchmarks/grokking_search.py --table runs/search/*

Plateau per setting as `align_lens.worlds.grokking.plateau` measures it (fit: train ≥ 0.99; rise: held-out > 0.2;
goal: rise − fit ≥ 2 × fit, then grok: held-out ≥ 0.9). φ = training compositions per atomic fact (entities ×
relations atomic facts; the default world: 100 × 20).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from align_lens.worlds.grokking import plateau
from align_lens.worlds.two_hop import make_two_hop_world
from align_lens.worlds.two_hop_model import LOG_FILE, train_two_hop_model


def table(folders: list[str]) -> str:
    lines = [
        "| setting | φ | wd | lr | d_model | init scale | batch | steps run | fit (train ≥ .99) | rise (held-out > .2) "
        "| plateau / fit | grok (held-out ≥ .9) | final train / held-out / OOD |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in folders:
        path = Path(folder)
        if not (path / LOG_FILE).exists():
            continue
        rows = [json.loads(line) for line in (path / LOG_FILE).read_text().splitlines()]
        s = json.loads((path / "search.json").read_text())
        p, last = plateau(*([r[k] for r in rows] for k in ("step", "train", "heldout"))), rows[-1]
        ratio = "–" if p["ratio"] is None else f"{p['ratio']:.1f}"
        lr = f"{s['lr']} → {s['lr_final']:g}×" if s.get("lr_final", 1.0) != 1.0 else s["lr"]
        lines.append(
            f"| {path.name} | {s['n_train'] / (s.get('n_entities', 100) * s.get('n_relations', 20)):.1f} | {s['weight_decay']} | {lr} | {s['d_model']} | {s.get('init_scale', 1.0)} "
            f"| {s.get('batch_size', 256)} | {last['step']} / {s['steps']} | {p['fit']} | {p['rise']} | {ratio} | {p['grok']} "
            f"| {last['train']:.3f} / {last['heldout']:.3f} / {last['ood']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", nargs="+", help="print the plateau table of these run folders and exit")
    ap.add_argument("--out")
    ap.add_argument("--n-train", type=int, default=6000, help="training compositions")
    ap.add_argument("--n-entities", type=int, default=100)
    ap.add_argument("--n-relations", type=int, default=20)
    ap.add_argument("--n-heldout", type=int, default=2000, help="held-out compositions")
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--init-scale", type=float, default=1.0, help="weight matrices × this at init (Omnigrok)")
    ap.add_argument(
        "--lr-final", type=float, default=1.0, help="cosine down to this × lr at the last step (1: constant)"
    )
    ap.add_argument("--steps", type=int, default=10000)
    ap.add_argument("--eval-every", type=int, default=250)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    if args.table:
        print(table(args.table))
        return
    if not args.out:
        ap.error("--out is required unless --table is given")
    world = make_two_hop_world(
        n_entities=args.n_entities,
        n_relations=args.n_relations,
        n_heldout=args.n_heldout,
        phrasing="compact",
        n_train=args.n_train,
    )
    settings = {
        k: getattr(args, k)
        for k in (
            "n_entities",
            "n_relations",
            "n_heldout",
            "n_train",
            "weight_decay",
            "lr",
            "lr_final",
            "d_model",
            "n_layers",
            "init_scale",
            "batch_size",
            "steps",
            "seed",
        )
    }
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "search.json").write_text(json.dumps(settings))
    train_two_hop_model(
        world,
        args.out,
        "implicit",
        n_layers=args.n_layers,
        d_model=args.d_model,
        d_mlp=4 * args.d_model,
        steps=args.steps,
        lr=args.lr,
        weight_decay=args.weight_decay,
        init_scale=args.init_scale,
        lr_final=args.lr_final,
        batch_size=args.batch_size,
        seed=args.seed,
        threads=1,
        checkpoint_every=args.eval_every,
        eval_every=args.eval_every,
        progress=False,
    )
    print(table([args.out]))


if __name__ == "__main__":
    main()
