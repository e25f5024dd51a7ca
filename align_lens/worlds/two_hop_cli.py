"""`align-lens` sub-commands of the two-hop world: train-two-hop, two-hop-study, grokking.

`cli.build_parser` calls `add_two_hop_commands(subparsers)`; each command takes --out, --seed and --device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from align_lens.cli.options import default_of


def cmd_train_two_hop(a: argparse.Namespace) -> int:
    from align_lens.worlds.two_hop import make_two_hop_world
    from align_lens.worlds.two_hop_model import load_two_hop_meta, train_two_hop_model

    kw = {"phrasing": a.phrasing} | ({} if a.official else {"n_entities": a.n_entities})
    world = make_two_hop_world(official=a.official, seed=a.world_seed, **kw)
    train_two_hop_model(
        world,
        a.out,
        a.format,
        steps=a.steps,
        lr=a.lr,
        seed=a.seed,
        device=a.device,
        threads=a.threads,
        checkpoint_every=a.checkpoint_every,
        eval_every=a.eval_every,
    )
    print(json.dumps(load_two_hop_meta(a.out)["final"], indent=1))
    return 0


def cmd_two_hop_study(a: argparse.Namespace) -> int:
    from align_lens.analysis.two_hop_study import StudyConfig, run_two_hop_study, summary_rows
    from align_lens.worlds.two_hop_model import load_two_hop_model, load_two_hop_world

    model, world = load_two_hop_model(a.model, a.device), load_two_hop_world(a.model)
    cfg = StudyConfig(
        hook_name=a.hook, entity_hook_name=a.entity_hook, seed=a.seed, device=a.device, swap_items=a.swap_items
    )
    res = run_two_hop_study(model, world, cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res.pop("aligned").save_model(str(out / "aligned_sae"))
    (out / "two_hop_study.json").write_text(json.dumps(res, indent=1, default=str))
    for row in summary_rows(res):
        print(row)
    return 0


def cmd_grokking(a: argparse.Namespace) -> int:
    from align_lens.analysis.grokking import GrokkingConfig, run_grokking

    cfg = GrokkingConfig(
        out_dir=a.out,
        model_dir=a.model,
        steps=a.steps,
        checkpoint_every=a.checkpoint_every,
        lr=a.lr,
        n_entities=a.n_entities,
        hook_name=a.hook,
        seed=a.seed,
        device=a.device,
        threads=a.threads,
        progress=a.progress,
    )
    rec = run_grokking(cfg)
    print(json.dumps({"crossings": rec["crossings"], "wall_s": rec["wall_s"]}, indent=1))
    print(f"wrote {Path(a.out) / 'grokking.json'} and {Path(a.out) / 'grokking.html'}")
    return 0


def _common(p: argparse.ArgumentParser, out_default: str | None) -> None:
    p.add_argument("--out", default=out_default, required=out_default is None, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")


def add_two_hop_commands(subparsers) -> None:
    """Add the two-hop sub-commands to an `argparse` sub-parser collection."""
    from align_lens.analysis.grokking import GrokkingConfig
    from align_lens.analysis.two_hop_study import StudyConfig
    from align_lens.worlds.two_hop_model import train_two_hop_model as train

    t = subparsers.add_parser("train-two-hop", help="train a small model on the two-hop world (with checkpoints)")
    _common(t, None)
    t.add_argument("--format", choices=["explicit", "implicit"], default="explicit", help="answer 'e2 e3' or 'e3'")
    t.add_argument("--official", action="store_true", help="the official layered 20/20/20 world, 4,000/4,000 split")
    t.add_argument("--phrasing", choices=["natural", "compact"], default="natural")
    t.add_argument("--n-entities", type=int, default=100)
    t.add_argument("--world-seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=default_of(train, "steps"))
    t.add_argument("--lr", type=float, default=default_of(train, "lr"))
    t.add_argument("--checkpoint-every", type=int, default=default_of(train, "checkpoint_every"), help="0: none")
    t.add_argument("--eval-every", type=int, default=default_of(train, "eval_every"))
    t.add_argument("--threads", type=int, default=default_of(train, "threads"))
    t.set_defaults(func=cmd_train_two_hop)

    s = subparsers.add_parser("two-hop-study", help="step-wise binding, entity binding and swaps at each hop")
    _common(s, "runs/two_hop_study")
    s.add_argument("--model", default=None, help="explicit two-hop model folder (default: the shipped one)")
    s.add_argument("--hook", default=StudyConfig.hook_name, help="hook of the relation slots and swaps")
    s.add_argument("--entity-hook", default=StudyConfig.entity_hook_name, help="hook of the bridge-entity slots")
    s.add_argument("--swap-items", type=int, default=StudyConfig.swap_items, help="base prompts per relation per half")
    s.set_defaults(func=cmd_two_hop_study)

    g = subparsers.add_parser("grokking", help="binding vs generalisation over an implicit model's checkpoints")
    _common(g, GrokkingConfig.out_dir)
    g.add_argument("--model", default=None, help="implicit model folder with checkpoints (default: train one)")
    g.add_argument("--steps", type=int, default=GrokkingConfig.steps)
    g.add_argument("--lr", type=float, default=GrokkingConfig.lr, help="learning rate of the implicit model")
    g.add_argument("--checkpoint-every", type=int, default=GrokkingConfig.checkpoint_every)
    g.add_argument("--n-entities", type=int, default=GrokkingConfig.n_entities)
    g.add_argument("--hook", default=GrokkingConfig.hook_name)
    g.add_argument("--threads", type=int, default=2)
    g.add_argument("--progress", action="store_true")
    g.set_defaults(func=cmd_grokking)
