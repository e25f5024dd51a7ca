"""`train-two-hop`, `two-hop-study` and `grokking`: the two-hop world (docs/two_hop.md).

Defaults are read from `train_two_hop_model`, `TwoHopWorld`, `StudyConfig` and `GrokkingConfig`; the heavy
work is imported inside each command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import get_args

from align_lens.cli.options import Given, non_negative_int, option, positive_float, positive_int
from align_lens.files import check_output_place


def add_train_two_hop(sub, common) -> None:
    from align_lens.worlds.two_hop import PHRASINGS, Format, TwoHopWorld, make_two_hop_world
    from align_lens.worlds.two_hop_model import train_two_hop_model as train

    t = sub.add_parser(
        "train-two-hop",
        parents=[common],
        help="train a small model on the two-hop world (with checkpoints)",
        description="Train a small model from scratch on the two-hop world; writes the model, its log and "
        "checkpoints to OUT.",
    )
    t.add_argument("--out", required=True, help="output folder")
    option(t, train, "seed", help="seed of the model's initialisation and data order")
    option(
        t, train, "fmt", flag="--format", dest="format", choices=list(get_args(Format)), help="answer 'e2 e3' or 'e3'"
    )
    t.add_argument("--official", action="store_true", help="the official layered 20/20/20 world, 4,000/4,000 split")
    option(t, TwoHopWorld, "phrasing", choices=list(PHRASINGS), help="question frames")
    option(t, TwoHopWorld, "n_entities", type=positive_int, help="entities of the random world")
    option(t, make_two_hop_world, "seed", flag="--world-seed", dest="world_seed", help="seed of the world")
    option(t, train, "steps", type=positive_int, help="training steps")
    option(t, train, "lr", type=positive_float, help="learning rate")
    option(t, train, "checkpoint_every", type=non_negative_int, help="steps between checkpoints; 0: none")
    option(t, train, "eval_every", type=non_negative_int, help="steps between evaluations; 0: only at the end")
    option(t, train, "threads", type=positive_int, help="torch threads")
    t.add_argument(
        "--no-resume",
        dest="resume",
        action="store_false",
        help="train afresh, replacing OUT's log and checkpoints (default: continue from OUT's newest checkpoint)",
    )
    t.set_defaults(run=run_train_two_hop)


def run_train_two_hop(a: argparse.Namespace) -> int:
    from align_lens.worlds.two_hop import make_two_hop_world
    from align_lens.worlds.two_hop_model import load_two_hop_meta, train_two_hop_model

    check_output_place(a.out)
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
        resume=a.resume,
    )
    print(json.dumps(load_two_hop_meta(a.out)["final"], indent=1))
    return 0


def add_two_hop_study(sub, common) -> None:
    from align_lens.worlds.two_hop_study import StudyConfig

    s = sub.add_parser(
        "two-hop-study",
        parents=[common],
        help="step-wise binding, entity binding and swaps at each hop",
        description="Step-wise binding (per step, per held-out phrasing, of the bridge entity) beside its floors "
        "(untrained model, shuffled labels) and the Stage-1 SAE's best latents, and swaps at each hop of an "
        "explicit two-hop model (aligned slots delta and paper edit, DiffMean, Stage-1 latents; α up to 32); writes "
        "OUT/aligned_sae and OUT/two_hop_study.json.",
    )
    s.add_argument("--out", default="runs/two_hop_study", help="output folder (default: runs/two_hop_study)")
    option(s, StudyConfig, "seed", help="random seed")
    s.add_argument("--model", default=None, help="explicit two-hop model folder (default: the shipped one)")
    option(s, StudyConfig, "hook_name", flag="--hook", dest="hook", help="hook of the relation slots and swaps")
    option(
        s,
        StudyConfig,
        "entity_hook_name",
        flag="--entity-hook",
        dest="entity_hook",
        help="hook of the bridge-entity slots",
    )
    option(s, StudyConfig, "swap_items", type=positive_int, help="base prompts per relation per half")
    s.set_defaults(run=run_two_hop_study)


def run_two_hop_study(a: argparse.Namespace) -> int:
    from align_lens.worlds.two_hop_model import load_two_hop_meta, load_two_hop_model, load_two_hop_world
    from align_lens.worlds.two_hop_study import StudyConfig, run_two_hop_study, summary_rows

    check_output_place(a.out, [a.model])
    model, world = load_two_hop_model(a.model, a.device), load_two_hop_world(a.model)
    cfg = StudyConfig(
        hook_name=a.hook,
        entity_hook_name=a.entity_hook,
        seed=a.seed,
        model_seed=load_two_hop_meta(a.model)["seed"],  # the untrained floor starts where its training did
        device=a.device,
        swap_items=a.swap_items,
    )
    res = run_two_hop_study(model, world, cfg)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    res.pop("aligned").save_model(str(out / "aligned_sae"))
    (out / "two_hop_study.json").write_text(json.dumps(res, indent=1, default=str))
    for row in summary_rows(res):
        print(row)
    return 0


def add_grokking(sub, common) -> None:
    from align_lens.worlds.grokking import QUICK, GrokkingConfig

    g = sub.add_parser(
        "grokking",
        parents=[common],
        help="binding and bridge swaps vs generalisation over an implicit model's checkpoints, per seed",
        description="Train an implicit two-hop model per seed (into OUT/seed_<s>/model unless --model is given) "
        "and, at every checkpoint, score held-out binding of aligned slots beside a probe, DiffMean, the Stage-1 "
        "SAE's best latent and a shuffled-label floor, and whether the answer follows a swapped bridge entity; "
        "writes OUT/grokking.json and OUT/grokking.html. Interrupted runs resume.",
    )
    option(g, GrokkingConfig, "out_dir", flag="--out", dest="out", help="output folder")
    g.add_argument(
        "--seeds",
        type=non_negative_int,
        nargs="+",
        action=Given,
        help=f"seeds, one model each (default: {' '.join(map(str, GrokkingConfig.seeds))}; with --model: 0)",
    )
    option(
        g,
        GrokkingConfig,
        "model_dir",
        flag="--model",
        dest="model",
        help="implicit model folder with checkpoints (one seed); omit to train one per seed",
    )
    option(
        g,
        GrokkingConfig,
        "steps",
        type=positive_int,
        action=Given,
        help="training steps of the implicit model (more than a trained seed has: extends it)",
    )
    option(g, GrokkingConfig, "lr", type=positive_float, help="learning rate of the implicit model")
    option(g, GrokkingConfig, "weight_decay", action=Given, help="AdamW weight decay of the implicit model")
    option(g, GrokkingConfig, "init_scale", type=positive_float, action=Given, help="weight matrices × this at init")
    g.add_argument(
        "--world-train",
        type=positive_int,
        help=f"training compositions (default: {GrokkingConfig.world_train}, φ = N / (entities × relations) "
        "atomic facts; with --official: all 4,000)",
    )
    option(
        g,
        GrokkingConfig,
        "checkpoint_every",
        type=positive_int,
        action=Given,
        help="steps between analysed checkpoints",
    )
    option(
        g,
        GrokkingConfig,
        "eval_every",
        type=positive_int,
        help="steps between accuracy evaluations, whose log gives the plateau (a divisor of --checkpoint-every)",
    )
    option(g, GrokkingConfig, "n_entities", type=positive_int, help="entities of the world")
    option(g, GrokkingConfig, "n_relations", type=positive_int, help="relations of the world")
    option(g, GrokkingConfig, "world_heldout", type=positive_int, help="held-out compositions of the world")
    g.add_argument(
        "--official",
        action="store_true",
        help="the official layered 20/20/20 world, 4,000/4,000 split (--world-train then defaults to all 4,000)",
    )
    option(g, GrokkingConfig, "hook_name", flag="--hook", dest="hook", help="hook read at every checkpoint")
    option(g, GrokkingConfig, "threads", type=positive_int, help="torch threads (1: bit-reproducible)")
    g.add_argument(
        "--quick",
        action="store_true",
        help=f"the short run (≤ 10 min on 2 cores): {', '.join(f'{k}={v}' for k, v in QUICK.items())} unless given",
    )
    g.add_argument("--progress", action="store_true", help="show progress bars")
    g.set_defaults(run=run_grokking)


def run_grokking(a: argparse.Namespace) -> int:
    from dataclasses import replace

    from align_lens.worlds.grokking import QUICK, GrokkingConfig, run_grokking

    check_output_place(a.out)  # --model may be OUT/seed_0/model, trained there by an earlier run: nothing is deleted
    cfg = GrokkingConfig(
        out_dir=a.out,
        model_dir=a.model,
        seeds=tuple(a.seeds or ((0,) if a.model else GrokkingConfig.seeds)),
        steps=a.steps,
        checkpoint_every=a.checkpoint_every,
        eval_every=a.eval_every,
        lr=a.lr,
        weight_decay=a.weight_decay,
        init_scale=a.init_scale,
        world_train=a.world_train or (None if a.official else GrokkingConfig.world_train),
        n_entities=a.n_entities,
        n_relations=a.n_relations,
        world_heldout=a.world_heldout,
        official=a.official,
        hook_name=a.hook,
        device=a.device,
        threads=a.threads,
        progress=a.progress,
    )
    given = getattr(a, "given", set())
    rec = run_grokking(replace(cfg, **{k: v for k, v in QUICK.items() if k not in given}) if a.quick else cfg)
    summary = {s: {"plateau": r["plateau"]} for s, r in rec["seeds"].items()}
    print(json.dumps({"seeds": summary, "wall_s": rec["wall_s"]}, indent=1))
    print(f"wrote {Path(a.out) / 'grokking.json'} and {Path(a.out) / 'grokking.html'}")
    return 0
