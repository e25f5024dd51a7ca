"""`align-lens` command line: each pipeline step as a sub-command (see `align-lens SUBCOMMAND --help`)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path


def _ontology(path: str):
    from align_lens.ontology import Ontology

    p = Path(path)
    if p.suffix == ".jsonl":
        return Ontology.from_jsonl(p)
    if p.suffix == ".csv":
        return Ontology.from_csv(p)
    return Ontology.from_json(p)


def _model_and_world(model_dir: str | None):
    from align_lens.worlds.base_model import load_base_model, load_base_world

    return load_base_model(model_dir), load_base_world(model_dir)


def cmd_demo(a: argparse.Namespace) -> int:
    from align_lens.training.stage2 import AlignConfig
    from align_lens.worlds.demo import DemoConfig, format_summary, run_demo

    cfg = DemoConfig(
        out_dir=a.out,
        model_path=a.model,
        hook_name=a.hook,
        n_people=a.n_people,
        d_sae=a.d_sae,
        k=a.k,
        stage1_steps=a.stage1_steps,
        align=AlignConfig(epochs=a.epochs, batch_size=a.batch_size),
        swap_items=a.swap_items,
        seed=a.seed,
        overwrite=a.overwrite,
    )
    record = run_demo(cfg)
    print(format_summary(record, a.out))
    return 0


def cmd_train_base(a: argparse.Namespace) -> int:
    from align_lens.worlds.base_model import evaluate_splits, train_base_model
    from align_lens.worlds.bio import make_world

    world = make_world(n_people=a.n_people, seed=a.world_seed)
    model = train_base_model(
        world,
        a.out,
        steps=a.steps,
        seed=a.seed,
        device=a.device,
        threads=a.threads,
        keep_checkpoints=not a.drop_checkpoints,
    )
    print(json.dumps(evaluate_splits(model, world), indent=1))
    return 0


def cmd_pretrain(a: argparse.Namespace) -> int:
    from align_lens.activations.gather import gather_token_activations
    from align_lens.training.stage1 import pretrain_sae
    from align_lens.worlds.demo import corpus_texts

    model, world = _model_and_world(a.model)
    if a.texts:
        texts = [t for t in Path(a.texts).read_text().splitlines() if t.strip()]
    else:
        bios, questions = corpus_texts(world, a.n_people, a.seed)
        texts = bios + questions
    acts = gather_token_activations(model, texts, a.hook, progress=True)
    sae = pretrain_sae(
        acts,
        d_sae=a.d_sae,
        architecture=a.architecture,
        k=a.k,
        steps=a.steps,
        hook_name=a.hook,
        model_name=a.model or "align_lens/bio-tiny",
        seed=a.seed,
        checkpoint_dir=Path(a.out) / "checkpoints",
        n_checkpoints=a.checkpoints,
    )
    sae.save_model(a.out)
    print(f"Stage-1 SAE ({type(sae).__name__}, d_sae={sae.cfg.d_sae}) written to {a.out}")
    return 0


def cmd_align(a: argparse.Namespace) -> int:
    from sae_lens import SAE

    from align_lens.training.stage2 import AlignConfig, align

    out = Path(a.out)
    if out.exists() and any(out.iterdir()) and not a.overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite or choose another --out.")
    model, world = _model_and_world(a.model)
    onto = _ontology(a.ontology) if a.ontology else world.ontology(a.n_people)
    sae = SAE.load_from_disk(a.sae)
    cfg = AlignConfig(
        hook_name=a.hook,
        epochs=a.epochs,
        batch_size=a.batch_size,
        lr=a.lr,
        binding=a.binding,
        decorrelation_weight=a.decorrelation_weight,
        train_free=not a.freeze_free,
        seed=a.seed,
    )
    aligned = align(sae, onto, model=model, config=cfg)
    aligned.save_model(out)
    onto.to_json(out / "ontology.json")
    print(
        f"aligned SAE written to {out}; training binding accuracy {aligned.cfg.metrics['binding_accuracy_train']:.3f}"
    )
    return 0


def cmd_eval(a: argparse.Namespace) -> int:
    from sae_lens import SAE

    from align_lens.activations.gather import gather_token_activations
    from align_lens.viz.report import write_report
    from align_lens.worlds.demo import DemoConfig, corpus_texts, evaluate_run, evaluation_sections, summary

    model, world = _model_and_world(a.model)
    aligned, stage1 = SAE.load_from_disk(a.sae), SAE.load_from_disk(a.stage1)
    onto = _ontology(a.ontology) if a.ontology else world.ontology(a.n_people)
    bios, questions = corpus_texts(world, a.n_people, 0)
    tokens = gather_token_activations(model, bios + questions, aligned.cfg.metadata.hook_name)
    results, swaps = evaluate_run(
        model, stage1, aligned, onto, tokens, DemoConfig(swap_items=a.swap_items, task_items=a.task_items)
    )
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    head = summary(results, swaps)
    (out / "eval.json").write_text(json.dumps({"summary": head, "results": results}, indent=1, default=str))
    write_report(out / "eval.html", "align_lens evaluation", evaluation_sections(head, results, swaps, onto.names))
    print(json.dumps(head, indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from align_lens.worlds.demo import DEFAULT_HOOK

    p = argparse.ArgumentParser(prog="align-lens", description="Concept-aligned SAEs (AlignSAE) for SAELens.")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("demo", help="end-to-end AlignSAE on the embedded world and shipped model")
    d.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    d.add_argument("--model", default=None, help="base-model folder (default: the shipped one)")
    d.add_argument("--hook", default=DEFAULT_HOOK, help=f"hook to read and steer (default {DEFAULT_HOOK})")
    d.add_argument("--n-people", type=int, default=None, help="use only the first N people (faster)")
    d.add_argument("--d-sae", type=int, default=1024)
    d.add_argument("--k", type=int, default=16, help="TopK of the Stage-1 SAE")
    d.add_argument("--stage1-steps", type=int, default=1500)
    d.add_argument("--epochs", type=int, default=4, help="Stage-2 epochs")
    d.add_argument("--batch-size", type=int, default=256, help="Stage-2 batch size")
    d.add_argument("--swap-items", type=int, default=40, help="base prompts per source concept for swaps")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    d.set_defaults(func=cmd_demo)

    t = sub.add_parser("train-base", help="train the tiny base model on the synthetic world (resumable)")
    t.add_argument("--out", required=True, help="folder for the model and its checkpoints")
    t.add_argument("--n-people", type=int, default=1000)
    t.add_argument("--world-seed", type=int, default=0)
    t.add_argument("--steps", type=int, default=2000)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu")
    t.add_argument("--threads", type=int, default=1, help="torch threads (the shipped model used 1)")
    t.add_argument("--drop-checkpoints", action="store_true", help="delete checkpoints once training ends")
    t.set_defaults(func=cmd_train_base)

    s = sub.add_parser("pretrain", help="Stage 1: train an ordinary SAE with SAELens on all token positions")
    s.add_argument("--out", required=True)
    s.add_argument("--model", default=None, help="base-model folder (default: the shipped one)")
    s.add_argument("--texts", default=None, help="text file, one document per line (default: the world's corpus)")
    s.add_argument("--n-people", type=int, default=None, help="world corpus of the first N people only")
    s.add_argument("--hook", default=DEFAULT_HOOK)
    s.add_argument("--architecture", default="topk", choices=["topk", "standard", "jumprelu"])
    s.add_argument("--d-sae", type=int, default=1024)
    s.add_argument("--k", type=int, default=16)
    s.add_argument("--steps", type=int, default=1500)
    s.add_argument("--checkpoints", type=int, default=4, help="checkpoints kept for resuming")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_pretrain)

    a = sub.add_parser("align", help="Stage 2: bind each ontology concept to a dedicated latent")
    a.add_argument("--sae", required=True, help="folder of a SAELens SAE (standard/topk/jumprelu)")
    a.add_argument("--out", required=True)
    a.add_argument("--ontology", default=None, help=".jsonl/.csv/.json ontology (default: the world's)")
    a.add_argument("--model", default=None, help="base-model folder (default: the shipped one)")
    a.add_argument("--n-people", type=int, default=None, help="world ontology of the first N people only")
    a.add_argument("--hook", default=None, help="default: the SAE's cfg.metadata.hook_name")
    a.add_argument("--epochs", type=int, default=20)
    a.add_argument("--batch-size", type=int, default=256)
    a.add_argument("--lr", type=float, default=1e-3)
    a.add_argument("--binding", default="mse_onehot", choices=["ce", "mse_onehot"])
    a.add_argument("--decorrelation-weight", type=float, default=0.01)
    a.add_argument("--freeze-free", action="store_true", help="train only the concept slots")
    a.add_argument("--seed", type=int, default=0)
    a.add_argument("--overwrite", action="store_true")
    a.set_defaults(func=cmd_align)

    e = sub.add_parser("eval", help="binding, fidelity and swaps of an aligned SAE → JSON + HTML report")
    e.add_argument("--sae", required=True, help="aligned SAE folder")
    e.add_argument("--stage1", required=True, help="the Stage-1 SAE it came from (for fidelity comparison)")
    e.add_argument("--out", required=True)
    e.add_argument("--ontology", default=None)
    e.add_argument("--model", default=None)
    e.add_argument("--n-people", type=int, default=None, help="evaluate on the first N people of the world")
    e.add_argument("--swap-items", type=int, default=40)
    e.add_argument("--task-items", type=int, default=300)
    e.set_defaults(func=cmd_eval)

    sub.add_parser(
        "publish", help="push an aligned SAE to the Hugging Face Hub (see `align-lens publish --help`)", add_help=False
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["publish"]:
        from align_lens.hub import publish_main

        return publish_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileExistsError, FileNotFoundError, KeyError, ValueError) as err:
        print(f"align-lens {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
