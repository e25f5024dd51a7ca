"""`demo`, `train-base` and `--world bio` / `--world bio-bpe` of `pretrain` / `align` / `eval`: the embedded
default (synthetic biography world + its tiny model) and the BPE biography world with its GPT-2-shaped model."""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from align_lens.cli.options import UsageError, default_of, flag_dest, option, positive_int
from align_lens.files import check_output_place
from align_lens.ontology import Ontology
from align_lens.training.config import with_values
from align_lens.worlds.base_model import load_base_model, load_base_world, train_base_model
from align_lens.worlds.bio import make_world
from align_lens.worlds.demo import BPE_HOOK, DemoConfig, corpus_texts


class BioInputs:
    """`--world bio`: the shipped tiny model, its synthetic biography world (the first `n_people` people, or all)
    and the demo's hook, in place of --model, --hook, --ontology and --texts."""

    model_name = "align_lens/bio-tiny"

    def __init__(self, n_people: int | None):
        self.world = load_base_world()
        if n_people is not None and n_people > self.world.n_people:
            raise UsageError(f"--n-people {n_people} but the world has {self.world.n_people} people; pass at most that")
        self.n_people = n_people
        self.hook: str = default_of(DemoConfig, "hook_name")

    def model(self, device: str):
        return load_base_model(device=device)

    def ontology(self) -> Ontology:
        return self.world.ontology(self.n_people)

    def texts(self, seed: int) -> list[str]:
        """The Stage-1 corpus: one biography per person and one question per person and relation."""
        bios, questions = corpus_texts(self.world, self.n_people, seed)
        return bios + questions


class BpeBioInputs:
    """`--world bio-bpe`: the shipped GPT-2-shaped model, its BPE biography world (train people × training
    phrasings; held out: the held-out phrasings) and a middle hook, in place of --model, --hook, --ontology and
    --texts. The world is imported only here."""

    model_name = "align_lens/bio-bpe"
    hook = BPE_HOOK
    train_command = "python benchmarks/train_bio_bpe.py --out DIR"

    def __init__(self, n_people: int | None):
        from align_lens.worlds.bpe_model import load_bpe_world

        self.check_shipped()
        self.world = load_bpe_world()
        if n_people is not None and n_people > self.world.n_people:
            raise UsageError(f"--n-people {n_people} but the world has {self.world.n_people} people; pass at most that")
        self.n_people = n_people

    @classmethod
    def check_shipped(cls) -> None:
        """A one-line error naming the training command when the package holds no trained model."""
        from align_lens.adapter import COMPACT_WEIGHTS
        from align_lens.worlds.bpe_model import DATA_DIR

        if not (DATA_DIR / COMPACT_WEIGHTS).exists():
            raise UsageError(
                f"--world bio-bpe needs the trained GPT-2-shaped model in {DATA_DIR}, which is missing; "
                f"train one with `{cls.train_command}` and pass --model DIR --ontology FILE instead (the world's "
                "ontology: BpeBioWorld.write_ontology)"
            )

    def model(self, device: str):
        from align_lens.worlds.bpe_model import load_bpe_model

        return load_bpe_model(device=device)

    def ontology(self) -> Ontology:
        return self.world.ontology("phrasings", self.n_people)

    def texts(self, seed: int) -> list[str]:
        """The Stage-1 corpus: one biography per person and one training question per train person and relation."""
        bios, questions = corpus_texts(self.world, self.n_people, seed, self.ontology())
        return bios + questions


DEMO_OPTIONS = {  # DemoConfig field (dotted: nested Stage1Config / AlignConfig) → (flag, value type, help)
    "model_path": ("--model", None, "base-model folder written by train-base (default: the shipped one)"),
    "hook_name": ("--hook", None, "hook to read and steer"),
    "n_people": ("--n-people", positive_int, "use only the first N people (faster; default: everyone)"),
    "stage1.d_sae": ("--d-sae", positive_int, "latents of the Stage-1 SAE"),
    "stage1.k": ("--k", positive_int, "TopK of the Stage-1 SAE"),
    "stage1.steps": ("--stage1-steps", positive_int, "Stage-1 training steps"),
    "align.epochs": ("--epochs", positive_int, "Stage-2 epochs"),
    "align.batch_size": ("--batch-size", positive_int, "Stage-2 batch size"),
    "swap_items": ("--swap-items", positive_int, "base prompts per source concept for swaps"),
    "seed": ("--seed", None, ""),
}


def add_demo(sub, common) -> None:
    d = sub.add_parser(
        "demo",
        parents=[common],
        help="end-to-end AlignSAE on the embedded world and shipped model",
        description="Stage 1 → Stage 2 → evaluation on the synthetic biography world and the shipped tiny model; "
        "writes OUT/aligned_sae, OUT/stage1_sae, OUT/results.json and OUT/report.html.",
    )
    option(d, DemoConfig, "out_dir", flag="--out", help="output folder")
    for name, (flag, kind, text) in DEMO_OPTIONS.items():
        option(d, DemoConfig, name, flag=flag, dest=flag_dest(flag), type=kind, help=text)
    d.add_argument(
        "--world",
        choices=("bio", "bio-bpe"),
        default="bio",
        help="bio: the word-level world and tiny model (fast); bio-bpe: GPT-2's tokenizer and the GPT-2-shaped model, "
        "with its own defaults (bpe_demo_config) under any option given here (default: bio)",
    )
    d.add_argument("--overwrite", action="store_true", help="replace an --out folder written by an earlier demo run")
    d.set_defaults(run=run_demo)


def run_demo(a: argparse.Namespace) -> int:
    from align_lens.worlds.demo import bpe_demo_config, format_summary, run_demo

    values = {name: getattr(a, flag_dest(flag)) for name, (flag, _, _) in DEMO_OPTIONS.items()}
    base = DemoConfig(overwrite=a.overwrite, device=a.device)
    if a.world == "bio-bpe":  # its own defaults; the options given (those off the bio defaults) go on top
        base = bpe_demo_config(overwrite=a.overwrite, device=a.device)
        values = {k: v for k, v in values.items() if v != default_of(DemoConfig, k)}
        BpeBioInputs.check_shipped()
    out_dir = a.out_dir if a.out_dir != default_of(DemoConfig, "out_dir") else base.out_dir
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; pass a folder path")
    record = run_demo(with_values(replace(base, out_dir=out_dir), values))
    print(format_summary(record, str(out)))
    return 0


def add_train_base(sub, common) -> None:
    t = sub.add_parser(
        "train-base",
        parents=[common],
        help="train the tiny base model on the synthetic world (resumable)",
        description="Train the tiny base model from scratch on a synthetic biography world; rerun the same "
        "command to resume from OUT/checkpoints.",
    )
    t.add_argument("--out", required=True, type=Path, help="folder for the model and its checkpoints")
    option(t, make_world, "n_people", type=positive_int, help="people in the world")
    option(t, make_world, "seed", flag="--world-seed", dest="world_seed", help="seed of the world")
    option(t, train_base_model, "steps", type=positive_int, help="training steps")
    option(t, train_base_model, "seed", help="seed of the model's initialisation and data order")
    option(t, train_base_model, "threads", type=positive_int, help="torch threads (the shipped model used 1)")
    t.add_argument("--drop-checkpoints", action="store_true", help="delete checkpoints once training ends")
    t.set_defaults(run=run_train_base)


def run_train_base(a: argparse.Namespace) -> int:
    from align_lens.worlds.base_model import evaluate_splits

    check_output_place(a.out)
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
