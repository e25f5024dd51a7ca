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

from align_lens import evals
from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.ontology import Ontology
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import AlignConfig, align
from align_lens.viz import figures
from align_lens.viz.report import write_report
from align_lens.worlds.base_model import load_base_model, load_base_world

# Chosen by measurement (docs/results.md, "Choice of hook"): at block 0's output the aligned slots bind
# held-out templates and swap relations better than at block 1's or 2's output.
DEFAULT_HOOK = "blocks.0.hook_resid_post"


@dataclass
class DemoConfig:
    """Sizes of every step; the defaults are the full demo (≤ 5 minutes on a 2-core CPU)."""

    out_dir: str = "runs/demo"
    model_path: str | None = None  # default: the model shipped with the package
    hook_name: str = DEFAULT_HOOK
    n_people: int | None = None  # default: everyone in the world
    d_sae: int = 1024
    k: int = 16
    stage1_steps: int = 1500
    stage1_batch_size: int = 1024
    align: AlignConfig = field(default_factory=lambda: AlignConfig(epochs=4, batch_size=256))
    alphas: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
    swap_items: int | None = 40  # base prompts per source concept (held-out templates)
    task_items: int | None = 300  # examples for task accuracy with the SAE spliced in
    seed: int = 0
    overwrite: bool = False
    progress: bool = True


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


def _prepare(out: Path, overwrite: bool) -> Path:
    """A fresh staging folder beside `out`; `out` itself is only replaced when the run succeeds."""
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise FileExistsError(
            f"{out} already exists and is not empty; pass overwrite=True (--overwrite) or another folder."
        )
    stage = out.with_name(out.name + ".partial")
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir(parents=True)
    return stage


def _commit(stage: Path, out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    stage.rename(out)


def split_activations(model, ontology: Ontology, hook: str, batch_size: int = 128) -> dict[str, torch.Tensor]:
    """Last-token activations of the train and heldout prompts."""
    return {
        s: gather_activations(model, ontology.prompts(s), hook, batch_size=batch_size) for s in ("train", "heldout")
    }


def evaluate_run(
    model,
    stage1,
    aligned,
    ontology: Ontology,
    token_acts: torch.Tensor,
    cfg: DemoConfig,
    split_acts: dict[str, torch.Tensor] | None = None,
) -> tuple[dict[str, Any], Any]:
    """Binding (train / held-out templates), fidelity, task accuracy with the SAE spliced in, swaps."""
    names, hook = ontology.names, aligned.cfg.metadata.hook_name
    split_acts = split_acts or split_activations(model, ontology, hook, cfg.align.gather_batch_size)
    out: dict[str, Any] = {}
    with torch.no_grad():
        for split in ("train", "heldout"):
            acts = split_acts[split]
            ex = ontology.select(split)
            out[f"binding_{split}"] = evals.binding_metrics(
                aligned.concept_acts(acts), ontology.labels(split), names, [e.template or "" for e in ex]
            )
        out["fidelity"] = {"aligned": evals.fidelity(aligned, token_acts), "stage1": evals.fidelity(stage1, token_acts)}
    sample = ontology.select("heldout")[:: max(1, len(ontology.select("heldout")) // (cfg.task_items or 10**9))]
    out["task_accuracy"] = {
        "clean": evals.task_accuracy(model, sample),
        "aligned_no_error_term": evals.task_accuracy(
            model, sample, sae=aligned, use_error_term=False, positions="last"
        ),
        "stage1_no_error_term": evals.task_accuracy(model, sample, sae=stage1, use_error_term=False, positions="last"),
    }
    swaps = evaluate_swaps(
        model,
        aligned,
        ontology.select("heldout"),
        alphas=cfg.alphas,
        mode="delta",
        max_items=cfg.swap_items,
        lookup=ontology,
        seed=cfg.seed,
    )
    out["swap"] = swaps.to_dict()
    return out, swaps


def summary(results: dict[str, Any], swaps) -> dict[str, float]:
    """The headline numbers."""
    best_alpha, best_exact = swaps.best("exact")
    return {
        "binding_train": results["binding_train"]["accuracy"],
        "binding_heldout": results["binding_heldout"]["accuracy"],
        "binding_heldout_hungarian": results["binding_heldout"]["hungarian_accuracy"],
        "explained_variance_aligned": results["fidelity"]["aligned"]["explained_variance"],
        "explained_variance_stage1": results["fidelity"]["stage1"]["explained_variance"],
        "task_acc_clean": results["task_accuracy"]["clean"]["exact"],
        "task_acc_aligned_spliced": results["task_accuracy"]["aligned_no_error_term"]["exact"],
        "swap_exact_best": best_exact,
        "swap_best_alpha": best_alpha,
        "swap_first_token_best": swaps.best("first_token")[1],
        "swap_lenient_best": swaps.best("lenient")[1],
    }


def evaluation_sections(headline: dict[str, float], results: dict[str, Any], swaps, names: list[str]) -> list:
    """Report sections for one evaluated SAE: summary, binding heatmap, swap curves, pair matrix, table, examples."""
    return [
        ("Summary", [{"metric": k, "value": v} for k, v in headline.items()]),
        ("Binding on held-out templates", figures.binding_heatmap(results["binding_heldout"]["confusion"], names)),
        ("Swap success by α (held-out templates, delta mode)", figures.swap_by_alpha(swaps)),
        (
            "Swap success per pair at the best α (exact answer)",
            figures.swap_pair_matrix(swaps, names, alpha=headline["swap_best_alpha"]),
        ),
        ("Swap table", swaps.table()),
        ("Swap examples", swaps.examples),
    ]


def run_demo(cfg: DemoConfig | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write `cfg.out_dir`/{aligned_sae/, stage1_sae/, results.json, report.html}."""
    cfg = cfg or DemoConfig()
    out = Path(cfg.out_dir)
    stage = _prepare(out, cfg.overwrite)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model = load_base_model(cfg.model_path)
    world = load_base_world(cfg.model_path)
    ontology = world.ontology(cfg.n_people)
    bios, questions = corpus_texts(world, cfg.n_people, cfg.seed)
    bio_acts = gather_token_activations(model, bios, cfg.hook_name, progress=cfg.progress)
    question_acts = gather_token_activations(model, questions, cfg.hook_name, progress=cfg.progress)
    token_acts = torch.cat([bio_acts, question_acts])
    split_acts = split_activations(model, ontology, cfg.hook_name, cfg.align.gather_batch_size)
    timings["activations_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    stage1 = pretrain_sae(
        token_acts,
        d_sae=cfg.d_sae,
        architecture="topk",
        k=cfg.k,
        steps=cfg.stage1_steps,
        batch_size=min(cfg.stage1_batch_size, len(token_acts)),
        hook_name=cfg.hook_name,
        model_name="align_lens/bio-tiny",
        seed=cfg.seed,
    )
    timings["stage1_s"] = time.perf_counter() - t

    t = time.perf_counter()
    align_cfg = AlignConfig(
        **{**asdict(cfg.align), "hook_name": cfg.hook_name, "seed": cfg.seed, "progress": cfg.progress}
    )
    aligned = align(stage1, ontology, activations=split_acts["train"], unlabelled=bio_acts, config=align_cfg)
    timings["stage2_s"] = time.perf_counter() - t

    t = time.perf_counter()
    results, swaps = evaluate_run(model, stage1, aligned, ontology, token_acts, cfg, split_acts)
    results["silence_on_biographies"] = evals.off_ontology_silence(aligned, bio_acts)
    timings["evaluation_s"] = time.perf_counter() - t
    timings["total_s"] = time.perf_counter() - t0
    headline = summary(results, swaps)
    aligned.cfg.metrics = aligned.cfg.metrics | headline

    aligned.save_model(stage / "aligned_sae")
    ontology.to_json(stage / "aligned_sae" / "ontology.json")
    stage1.save_model(stage / "stage1_sae")
    config_dict = asdict(cfg) | {"align": align_cfg.__dict__}
    record = {
        "summary": headline,
        "timings": timings,
        "config": config_dict,
        "results": results,
        "history": aligned.history.steps,
    }
    (stage / "results.json").write_text(json.dumps(record, indent=1, default=str))
    sections = evaluation_sections(headline, results, swaps, ontology.names)
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
