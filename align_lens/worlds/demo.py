"""The end-to-end AlignSAE demo on the embedded default (synthetic biography world + shipped tiny model).

Stage 1 (SAELens trainer, all token positions) → Stage 2 (`align`) → evaluation (binding, fidelity,
swaps through hook points) → outputs (aligned SAE folder, results.json, report.html).
"""

from __future__ import annotations

import json
import random
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from align_lens.activations.gather import gather_token_activations
from align_lens.evals.binding import off_ontology_silence
from align_lens.evals.evaluate import EvalConfig, evaluate, headline, split_activations
from align_lens.interventions.editors import ALPHAS
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import AlignConfig, align
from align_lens.viz import figures
from align_lens.viz.report import evaluation_sections, write_report
from align_lens.worlds.base_model import load_base_model, load_base_world

# Chosen on validation people (benchmarks/hook_choice.py, docs/results.md "Which hook"): before block 0's MLP the
# relation (read by attention from the cue word) and the person add up with no interaction, so one edit vector per
# relation pair swaps exactly; after the MLP they are entangled and every single-vector edit tops out near 0.88.
DEFAULT_HOOK = "blocks.0.hook_resid_mid"
MARKER = ".align_lens_demo"  # in every demo output folder: the only folders DemoConfig.overwrite replaces


@dataclass
class DemoConfig:
    """Sizes of every step; the defaults are the full demo (≤ 5 minutes on a 2-core CPU)."""

    out_dir: str = "runs/demo"
    model_path: str | None = None  # default: the model shipped with the package
    hook_name: str = DEFAULT_HOOK
    n_people: int | None = None  # default: everyone in the world
    # Stage 1: chosen by benchmarks/stage1_sweep.py (docs/results.md, "Issue 12")
    d_sae: int = 512
    k: int = 64
    stage1_steps: int = 1500
    stage1_batch_size: int = 1024
    stage1_lr: float = 3e-3
    stage1_aux_coefficient: float = 1.0  # SAELens' aux-k loss weight
    stage1_dead_window: int = 50  # steps without firing before aux-k revives a latent (SAELens' default 1,000)
    stage1_init_b_dec: str = "mean"
    stage1_last_tokens: int = 1  # copies of the training questions' last-token activations in the Stage-1 corpus
    # Stage 2's unlabelled rows: "tokens" (every token of the Stage-1 corpus: biographies and questions) keeps the
    # explained variance on question tokens; "bios" (biography tokens only) lets it drift (docs/results.md, issue 12)
    stage2_unlabelled: str = "tokens"
    # reconstruction weight 10: chosen on validation people (benchmarks/swap_protocol.py --tune, docs/results.md)
    align: AlignConfig = field(
        default_factory=lambda: AlignConfig(epochs=4, batch_size=256, reconstruction_weight=10.0)
    )
    alphas: tuple[float, ...] = ALPHAS
    swap_items: int | None = 40  # base prompts per source concept (held-out templates)
    task_items: int | None = 300  # examples for task accuracy with the SAE spliced in
    seed: int = 0
    overwrite: bool = False  # replace out_dir, only if an earlier demo run wrote it (it carries MARKER)
    device: str = "cpu"  # model, Stage 1, Stage 2 and evaluation run here
    progress: bool = True

    def stage1_options(self) -> dict[str, Any]:
        """`pretrain_sae` keyword arguments of this demo's Stage 1 (besides activations, hook and seed)."""
        return {
            "d_sae": self.d_sae,
            "architecture": "topk",
            "k": self.k,
            "steps": self.stage1_steps,
            "batch_size": self.stage1_batch_size,
            "lr": self.stage1_lr,
            "aux_loss_coefficient": self.stage1_aux_coefficient,
            "dead_feature_window": self.stage1_dead_window,
            "init_b_dec": self.stage1_init_b_dec,
        }

    def eval_config(self) -> EvalConfig:
        """The evaluation settings of this demo run."""
        return EvalConfig(alphas=self.alphas, swap_items=self.swap_items, task_items=self.task_items, seed=self.seed)


def corpus_texts(world, n_people: int | None, seed: int) -> tuple[list[str], list[str]]:
    """(one biography per person, one training-template question per person and relation) for the first
    `n_people` people: the Stage-1 corpus."""
    n = n_people or world.n_people
    bios = [d.text for d in world.documents(seed) if d.loss_from == 0][:n]
    rng = random.Random(seed)
    by_key: dict[tuple, list[str]] = {}
    for e in world.ontology(n).select("train"):
        by_key.setdefault((e.entity, e.concept), []).append(e.prompt)
    return bios, [rng.choice(prompts) for prompts in by_key.values()]


def _written_by_demo(folder: Path) -> bool:
    return (folder / MARKER).is_file()


def _prepare(out: Path, overwrite: bool) -> Path:
    """A fresh staging folder beside `out`, marked as a demo output; `out` itself is only replaced when the run
    succeeds, and `overwrite` only ever replaces a folder an earlier demo run wrote."""
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{out} is a file; pass a folder path as out_dir (--out).")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{out} already exists and is not empty; pass overwrite=True (--overwrite) or another folder."
            )
        if not _written_by_demo(out):
            raise FileExistsError(
                f"{out} was not written by the demo (no {MARKER} file), so overwrite will not delete it; "
                "choose another folder or remove it yourself."
            )
    stage = out.with_name(out.name + ".partial")
    if stage.exists():
        if not _written_by_demo(stage):
            raise FileExistsError(f"{stage} exists and was not written by the demo; move it away or remove it.")
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    (stage / MARKER).write_text("written by align_lens.worlds.demo.run_demo; --overwrite may replace this folder\n")
    return stage


def _commit(stage: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)


def run_demo(cfg: DemoConfig | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write `cfg.out_dir`/{aligned_sae/, stage1_sae/, ontology.json, results.json,
    report.html}."""
    cfg = cfg or DemoConfig()
    out = Path(cfg.out_dir)
    stage = _prepare(out, cfg.overwrite)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = load_base_model(cfg.model_path, device=cfg.device)
    world = load_base_world(cfg.model_path)
    ontology = world.ontology(cfg.n_people)
    bios, questions = corpus_texts(world, cfg.n_people, cfg.seed)
    bio_acts = gather_token_activations(model, bios, cfg.hook_name, progress=cfg.progress)
    question_acts = gather_token_activations(model, questions, cfg.hook_name, progress=cfg.progress)
    token_acts = torch.cat([bio_acts, question_acts])
    split_acts = split_activations(model, ontology, cfg.hook_name, cfg.align.gather_batch_size)
    timings["activations_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    corpus = torch.cat([token_acts, *[split_acts["train"]] * cfg.stage1_last_tokens])
    options = cfg.stage1_options()
    options["batch_size"] = min(cfg.stage1_batch_size, len(corpus))
    stage1 = pretrain_sae(
        corpus,
        **options,
        hook_name=cfg.hook_name,
        model_name="align_lens/bio-tiny",
        seed=cfg.seed,
        device=cfg.device,
        progress=cfg.progress,
    )
    timings["stage1_s"] = time.perf_counter() - t

    t = time.perf_counter()
    overrides = {"hook_name": cfg.hook_name, "seed": cfg.seed, "progress": cfg.progress, "device": cfg.device}
    align_cfg = AlignConfig(**asdict(cfg.align) | overrides)
    unlabelled = {"tokens": token_acts, "bios": bio_acts}[cfg.stage2_unlabelled]
    aligned = align(
        stage1, ontology, model=model, activations=split_acts["train"], unlabelled=unlabelled, config=align_cfg
    )
    timings["stage2_s"] = time.perf_counter() - t

    t = time.perf_counter()
    results = evaluate(model, aligned, ontology, cfg.eval_config(), stage1=stage1, tokens=token_acts, acts=split_acts)
    silence = off_ontology_silence(aligned, bio_acts)
    timings["evaluation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    summary = headline(results)
    aligned.cfg.metrics = aligned.cfg.metrics | summary

    aligned.save_model(stage / "aligned_sae")
    ontology.to_json(stage / "ontology.json")  # beside, not inside, the SAE folder that gets published
    stage1.save_model(stage / "stage1_sae")
    config_dict = asdict(cfg) | {"align": align_cfg.__dict__}
    record = {
        "summary": summary,
        "timings": timings,
        "config": config_dict,
        "results": results,
        "silence_on_biographies": silence,
        "history": aligned.history.steps,
    }
    (stage / "results.json").write_text(json.dumps(record, indent=1, default=str))
    sections = evaluation_sections(results)
    sections[1:1] = [
        ("Timings (s)", [{"step": k, "seconds": v} for k, v in timings.items()]),
        ("Stage-2 losses", figures.loss_curves(aligned.history)),
    ]
    write_report(stage / "report.html", "align_lens demo: AlignSAE on the synthetic biography world", sections)
    _commit(stage, out)
    return record


def format_summary(record: dict[str, Any], out_dir: str) -> str:
    """The readable end-of-run summary."""
    s, t = record["summary"], record["timings"]
    lines = [
        f"AlignSAE demo finished in {t['total_s']:.0f} s  (stage 1 {t['stage1_s']:.0f} s, stage 2 {t['stage2_s']:.0f} s, eval {t['evaluation_s']:.0f} s)",
        f"  binding accuracy      train {s['binding_train']:.3f}   held-out templates {s['binding_heldout']:.3f}",
        f"  explained variance    aligned {s['explained_variance_aligned']:.3f}   stage-1 {s['explained_variance_stage1']:.3f}",
        f"  task accuracy         clean {s['task_acc_clean']:.3f}   aligned SAE spliced (no error term) {s['task_acc_aligned_spliced']:.3f}",
        f"  swap success (best α={s['swap_best_alpha']})  exact {s['swap_exact_best']:.3f}   first token {s['swap_first_token_best']:.3f}   lenient {s['swap_lenient_best']:.3f}",
        f"  outputs: {out_dir}/aligned_sae (SAE.load_from_disk after `import align_lens`), {out_dir}/report.html",
    ]
    return "\n".join(lines)
