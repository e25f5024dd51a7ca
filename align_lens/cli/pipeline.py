"""`pretrain`, `align` and `eval`: the pipeline on your own model and ontology (or on the shipped world).

--model is a folder saved by `align_lens.save_transformer` or a TransformerLens model name (e.g. gpt2, downloaded
once from the Hub). `--world bio` (or `bio-bpe`) in its place chooses a shipped model and its synthetic world, whose
ontology, texts and hook then stand in for --ontology, --texts and --hook; the world is imported only then.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any, Literal, get_args, get_type_hints

from align_lens.adapter import check_sae_fits, residual_hooks, resolve_hook
from align_lens.cli import inputs
from align_lens.cli.options import (
    UsageError,
    flag_dest,
    option,
    positive_float,
    positive_int,
)
from align_lens.evals.evaluate import EvalConfig
from align_lens.files import strict_json
from align_lens.ontology import Ontology
from align_lens.training.config import AlignConfig, Runtime, Stage1Config, with_values
from align_lens.training.stage1 import pretrain_sae

MODEL_HELP = (
    "a folder saved by align_lens.save_transformer, or a TransformerLens model name such as gpt2 (needs the network "
    "once); required unless --world is given"
)
WORLDS = ("bio", "bio-bpe")
WORLD_HELP = (
    "bio: the shipped tiny model and its synthetic biography world, whose ontology, corpus and the demo's hook "
    "stand in for --ontology, --texts and --hook; bio-bpe: the same for the GPT-2-shaped model and its BPE "
    "biography world (hook blocks.1.hook_resid_mid); in place of --model"
)


def choices_of(source: Any, name: str) -> list[str]:
    """The values of a Literal-typed field or parameter."""
    hint = get_type_hints(source)[name]
    if getattr(hint, "__origin__", None) is not Literal:
        raise TypeError(f"{name} is not a Literal")
    return list(get_args(hint))


# ---- shared: model, hook, world -----------------------------------------------------------------------
def _world(a: argparse.Namespace):
    """The inputs --world supplies (None without it); exactly one of --model and --world is given."""
    if a.world is None:
        if a.model is None:
            raise UsageError(
                "pass --model (a folder saved by align_lens.save_transformer, or a TransformerLens name such as "
                "gpt2), or --world bio for the shipped tiny model and its synthetic world"
            )
        if a.n_people is not None:
            raise UsageError("--n-people only applies to --world bio / bio-bpe; drop it (or use --world, not --model)")
        return None
    if a.model is not None:
        raise UsageError(f"--world {a.world} brings its own model; drop --model (or --world)")
    from align_lens.cli.world import BioInputs, BpeBioInputs

    return (BioInputs if a.world == "bio" else BpeBioInputs)(a.n_people)


def _model(a: argparse.Namespace, world):
    return inputs.load_model(a.model, a.device) if world is None else world.model(a.device)


def _model_name(a: argparse.Namespace, world, model) -> str:
    return inputs.model_name(a.model, model) if world is None else world.model_name


def _hook(a: argparse.Namespace, model, world) -> str:
    if a.hook is not None:
        return resolve_hook(model, a.hook)
    if world is None:
        raise UsageError(f"pass --hook with --model, e.g. one of {residual_hooks(model)}")
    return world.hook


def _ontology(a: argparse.Namespace, world) -> Ontology:
    if a.ontology is not None:
        return inputs.load_ontology(a.ontology)
    if world is not None:
        return world.ontology()
    raise UsageError("pass --ontology FILE (.jsonl, .csv or .json) with --model")


def _model_options(p: argparse.ArgumentParser, ontology_help: str) -> None:
    p.add_argument("--model", default=None, help=MODEL_HELP)
    p.add_argument("--world", default=None, choices=WORLDS, help=WORLD_HELP)
    p.add_argument("--ontology", default=None, help=ontology_help)
    p.add_argument("--n-people", type=positive_int, default=None, help="--world only: its first N people")


# ---- pretrain ----------------------------------------------------------------------------------------
STAGE1_OPTIONS = {  # Stage1Config field → (value type, help)
    "k": (positive_int, "TopK: active latents per token"),
    "steps": (positive_int, "training steps"),
    "batch_size": (positive_int, "token activations per step"),
    "lr": (positive_float, "learning rate"),
    "checkpoint_dir": (None, "folder for resumable checkpoints (rerun to resume)"),
}


def add_pretrain(sub, common) -> None:
    s = sub.add_parser(
        "pretrain",
        parents=[common],
        help="Stage 1: an ordinary SAELens SAE trained on every token of your texts",
        description="Stage 1: train an ordinary SAE (SAELens' trainer) on the activations of every token of the "
        "texts at --hook. Texts: --texts FILE (one per line), else the --ontology's prompts, else (--world bio) "
        "the shipped world's corpus.",
    )
    s.add_argument("--out", required=True, type=Path, help="folder for the SAE (cfg.json + weights)")
    _model_options(s, "ontology file whose prompts are the texts when --texts is not given")
    s.add_argument("--texts", default=None, help="UTF-8 text file, one text per line")
    s.add_argument("--hook", default=None, help="hook to read (required with --model; --world bio: the demo's hook)")
    option(s, Stage1Config, "architecture", choices=choices_of(Stage1Config, "architecture"))
    s.add_argument("--d-sae", type=positive_int, required=True, help="number of latents")
    for name, (kind, text) in STAGE1_OPTIONS.items():
        option(s, Stage1Config, name, type=kind, help=text)
    option(s, Stage1Config, "runtime.seed")
    option(s, Stage1Config, "n_checkpoints", flag="--checkpoints", help="checkpoints kept in --checkpoint-dir")
    s.add_argument("--store", type=Path, default=None, help=STORE_HELP)
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    s.set_defaults(run=run_pretrain)


GATHER_BATCH = 32  # texts per forward pass, in memory or into a store (same batches: same activations)
STORE_HELP = (
    "gather the token activations into an on-disk store in this folder and stream training from it instead of "
    "holding them in memory; rerunning the command resumes an interrupted gather and reuses a finished one"
)


def _token_activations(model, texts: list[str], hook: str, store: Path | None, model_name: str | None = None):
    """Every token's activation at `hook`: a tensor, or an `ActivationStore` at `store` (resumed if unfinished)."""
    if store is None:
        from align_lens.activations.gather import gather_token_activations

        return gather_token_activations(model, texts, hook, GATHER_BATCH, progress=True)
    from align_lens.activations.store import write_store

    return write_store(store, model, texts, hook, None, batch_size=GATHER_BATCH, model_name=model_name, progress=True)


def _pretrain_texts(a: argparse.Namespace, world) -> list[str]:
    if a.texts is not None:
        return inputs.read_texts(a.texts)
    if a.ontology is not None:
        return inputs.load_ontology(a.ontology).prompts()
    if world is None:
        raise UsageError("pass --texts FILE (one text per line) or --ontology FILE with --model")
    return world.texts(a.seed)


def run_pretrain(a: argparse.Namespace) -> int:
    if a.architecture == "topk" and a.k > a.d_sae:
        raise UsageError(f"--k {a.k} is larger than --d-sae {a.d_sae}; pass --k ≤ --d-sae")
    if a.n_checkpoints and a.checkpoint_dir is None:
        raise UsageError("--checkpoints needs --checkpoint-dir (the folder to keep them in)")
    inputs.check_out(a)
    world = _world(a)
    texts = _pretrain_texts(a, world)
    model = _model(a, world)
    hook = _hook(a, model, world)
    acts = _token_activations(model, texts, hook, a.store, _model_name(a, world, model))
    if len(acts) < a.batch_size:
        raise UsageError(
            f"--batch-size {a.batch_size} but the texts give only {len(acts)} token activations; "
            f"pass --batch-size ≤ {len(acts)} or more texts"
        )
    values = {k: getattr(a, k) for k in ("architecture", "d_sae", "n_checkpoints", *STAGE1_OPTIONS)}
    runtime = Runtime(device=a.device, seed=a.seed)
    config = Stage1Config(**values, hook_name=hook, model_name=_model_name(a, world, model), runtime=runtime)
    sae = pretrain_sae(acts, config)
    with inputs.staged(a) as stage:
        sae.save_model(stage)
    print(f"Stage-1 SAE ({type(sae).__name__}, d_sae={sae.cfg.d_sae}, {len(acts)} tokens) written to {a.out}")
    return 0


# ---- align -------------------------------------------------------------------------------------------
ALIGN_OPTIONS = {  # AlignConfig field (dotted: nested block) → (flag, value type, help)
    "epochs": ("--epochs", positive_int, "passes over the training examples"),
    "steps": ("--steps", positive_int, "optimiser steps (overrides --epochs)"),
    "batch_size": ("--batch-size", positive_int, "labelled examples per step"),
    "optimiser.lr": ("--lr", positive_float, "learning rate"),
    "weights.decorrelation": ("--decorrelation-weight", None, "weight of the slot decorrelation loss"),
    "weights.silence": ("--silence-weight", None, "weight of slot silence on --texts tokens"),
    "weights.interchange": ("--interchange-weight", None, "weight of the causal swap term (runs the model; 0: off)"),
    "patience": ("--patience", positive_int, "epochs without improvement before stopping"),
    "runtime.seed": ("--seed", None, ""),
    "checkpoint_dir": ("--checkpoint-dir", None, "save every epoch here; a rerun with the same settings resumes"),
}


def add_align(sub, common) -> None:
    a = sub.add_parser(
        "align",
        parents=[common],
        help="Stage 2: bind each ontology concept to a dedicated latent",
        description="Stage 2: post-train a SAELens SAE so that each concept of the ontology owns one latent.",
    )
    a.add_argument("--sae", required=True, help="folder of a SAELens SAE (standard, topk or jumprelu)")
    a.add_argument("--out", required=True, type=Path, help="folder for the aligned SAE")
    _model_options(a, "ontology file (.jsonl, .csv or .json); required with --model")
    a.add_argument("--texts", default=None, help="ordinary text, one per line: its tokens train reconstruction+silence")
    option(a, AlignConfig, "hook_name", flag="--hook", help="hook to align at (must be the SAE's)")
    option(a, AlignConfig, "binding", choices=choices_of(AlignConfig, "binding"))
    option(a, AlignConfig, "init", choices=choices_of(AlignConfig, "init"), help="slot initialisation")
    for name, (flag, kind, text) in ALIGN_OPTIONS.items():
        option(a, AlignConfig, name, flag=flag, dest=flag_dest(flag), type=kind, help=text)
    a.add_argument("--freeze-free", action="store_true", help="train only the concept slots")
    a.add_argument(
        "--interchange-span",
        action="store_true",
        help="the swap term's edit also over the answer tokens (for multi-token answers and span swaps)",
    )
    a.add_argument("--compile", action="store_true", help="torch.compile the loss terms (faster on a GPU)")
    a.add_argument("--store", type=Path, default=None, help=f"--texts only: {STORE_HELP}")
    a.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    a.set_defaults(run=run_align)


def run_align(a: argparse.Namespace) -> int:
    from align_lens.training.stage2 import align

    if a.store is not None and a.texts is None:
        raise UsageError("--store holds the --texts token activations; pass --texts FILE with it")
    inputs.check_out(a)
    world = _world(a)
    onto = _ontology(a, world)
    sae = inputs.load_sae(a.sae, "--sae", a.device)
    model = _model(a, world)
    values = {name: getattr(a, flag_dest(flag)) for name, (flag, _, _) in ALIGN_OPTIONS.items()}
    config = with_values(
        AlignConfig(hook_name=a.hook_name, binding=a.binding, init=a.init, train_free=not a.freeze_free),
        values | {"compile": a.compile, "interchange_span": a.interchange_span, "runtime.device": a.device},
    )
    unlabelled = None
    if a.texts is not None:
        hook = config.hook_name or sae.cfg.metadata.hook_name
        unlabelled = _token_activations(model, inputs.read_texts(a.texts), hook, a.store, _model_name(a, world, model))
    aligned = align(sae, onto, model=model, unlabelled=unlabelled, config=config)
    with inputs.staged(a) as stage:
        aligned.save_model(stage)
    accuracy = aligned.cfg.metrics["binding_accuracy_train"]
    print(f"aligned SAE written to {a.out}; training binding accuracy {accuracy:.3f}")
    return 0


# ---- eval --------------------------------------------------------------------------------------------
EVAL_OPTIONS = {  # EvalConfig field → (value type, help)
    "swap_items": (positive_int, "base prompts per source concept for swaps"),
    "task_items": (positive_int, "prompts for task accuracy"),
    "swap_mode": (None, "delta (α × slot scale), paper (α = slot value) or steer (α × ‖h‖)"),
    "best_by": (None, "scorer that picks the best α"),
    "split": (None, "ontology split for swaps and task accuracy"),
    "seed": (None, "seed of the swap sample"),
    "validation_entities": (None, "entities to choose the swap mode and α on (0: best α on the reported trials)"),
    "test_entities": (positive_int, "entities the chosen swap is reported on (default: all the others)"),
}


def add_eval(sub, common) -> None:
    e = sub.add_parser(
        "eval",
        parents=[common],
        help="binding, fidelity and swaps of an aligned SAE → eval.json + eval.html",
        description="Evaluate an aligned SAE on an ontology (concepts matched by name) and write eval.json "
        "and a self-contained eval.html.",
    )
    e.add_argument("--sae", required=True, help="aligned SAE folder (written by `align-lens align`)")
    e.add_argument("--stage1", default=None, help="the Stage-1 SAE it came from, for comparison (optional)")
    e.add_argument("--out", required=True, type=Path, help="folder for eval.json and eval.html")
    _model_options(e, "ontology file (concepts matched to the SAE's by name); required with --model")
    e.add_argument("--texts", default=None, help="text file whose tokens measure fidelity (default: the prompts)")
    for name, (kind, text) in EVAL_OPTIONS.items():
        option(e, EvalConfig, name, type=kind, help=text)
    option(e, EvalConfig, "alphas", type=float, nargs="+", help="swap strengths, in the editor's unit")
    option(e, EvalConfig, "modes", nargs="+", help="swap modes to choose from on the validation entities")
    e.add_argument("--no-swaps", dest="swaps", action="store_false", help="skip swaps (no entity/answer needed)")
    e.add_argument("--no-task-accuracy", dest="task_accuracy", action="store_false", help="skip task accuracy")
    e.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    e.set_defaults(run=run_eval)


def _load_pair(a: argparse.Namespace):
    from align_lens.saes.aligned import AlignedSAE

    aligned = inputs.load_sae(a.sae, "--sae", a.device)
    stage1 = None if a.stage1 is None else inputs.load_sae(a.stage1, "--stage1", a.device)
    if not isinstance(aligned, AlignedSAE):
        swapped = " (did you swap --sae and --stage1?)" if isinstance(stage1, AlignedSAE) else ""
        raise UsageError(f"--sae {a.sae} is not an aligned SAE{swapped}; pass the folder `align-lens align` wrote")
    if isinstance(stage1, AlignedSAE):
        raise UsageError(f"--stage1 {a.stage1} is an aligned SAE; pass the plain Stage-1 SAE it was aligned from")
    return aligned, stage1


def run_eval(a: argparse.Namespace) -> int:
    from align_lens.activations.gather import gather_token_activations
    from align_lens.evals.evaluate import evaluate, headline
    from align_lens.viz.report import evaluation_sections, write_report

    inputs.check_out(a)
    world = _world(a)
    aligned, stage1 = _load_pair(a)
    onto = _ontology(a, world)
    model = _model(a, world)
    hook = check_sae_fits(model, aligned)
    texts = None
    if a.texts is not None:
        texts = inputs.read_texts(a.texts)
    elif world is not None:
        texts = world.texts(0)
    tokens = None if texts is None else gather_token_activations(model, texts, hook)
    fields = {f.name for f in dataclasses.fields(EvalConfig)}
    values: dict[str, Any] = {k: v for k, v in vars(a).items() if k in fields}
    values["alphas"], values["modes"] = tuple(a.alphas), tuple(a.modes)
    config = EvalConfig(**values)
    if config.swaps and not any(e.entity and e.answer for e in onto.select(config.split) or onto.select()):
        raise UsageError("swaps need examples with 'entity' and 'answer'; add them to the ontology or pass --no-swaps")
    result = evaluate(model, aligned, onto, config, stage1=stage1, tokens=tokens)
    head = headline(result)
    with inputs.staged(a) as stage:
        (stage / "eval.json").write_text(strict_json({"summary": head, "results": result}))
        write_report(stage / "eval.html", "align_lens evaluation", evaluation_sections(result))
    print(strict_json(head))
    return 0
