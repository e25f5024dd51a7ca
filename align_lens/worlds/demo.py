"""The end-to-end AlignSAE demo on the embedded default (synthetic biography world + shipped tiny model).

Stage 1 (SAELens trainer, all token positions) → Stage 2 (`align`) → evaluation (binding, fidelity,
swaps through hook points) → outputs (aligned SAE folder, results.json, report.html).
"""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from align_lens.activations.gather import gather_token_activations
from align_lens.evals.binding import off_ontology_silence
from align_lens.evals.evaluate import EvalConfig, evaluate, headline, split_activations
from align_lens.files import output_folder, strict_json
from align_lens.interventions.editors import ALPHAS
from align_lens.training.config import AlignConfig, LossWeights, Runtime, Stage1Config
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.viz import figures
from align_lens.viz.report import evaluation_sections, write_report
from align_lens.worlds.base_model import load_base_model, load_base_world

# Chosen on validation people (benchmarks/hook_choice.py, docs/results.md "Which hook"): before block 0's MLP the
# relation (read by attention from the cue word) and the person add up with no interaction, so one edit vector per
# relation pair swaps exactly; after the MLP they are entangled and every single-vector edit tops out near 0.88.
DEFAULT_HOOK = "blocks.0.hook_resid_mid"
# The BPE world's hook (benchmarks/bpe_protocol.py, docs/bio_bpe.md): chosen on validation people in its layer sweep.
BPE_HOOK = "blocks.1.hook_resid_mid"
BPE_ALPHAS = (1.0, 1.25, 1.5, 2.0)  # the BPE demo's swap grid (4 of ALPHAS' 7 values: the demo's time budget)


@dataclass
class DemoConfig:
    """Sizes of every step; the defaults are the full demo (≤ 5 minutes on a 2-core CPU). `bpe_demo_config()` is
    the demo on the BPE biography world and its GPT-2-shaped model."""

    out_dir: str = "runs/demo"
    world: str = "bio"  # "bio": the word-level world and tiny model; "bio-bpe": GPT-2's tokenizer, GPT-2-shaped model
    model_path: str | None = None  # default: the model shipped with the package
    hook_name: str = DEFAULT_HOOK
    n_people: int | None = None  # default: everyone in the world
    # Stage 1: chosen by benchmarks/stage1_sweep.py (docs/results.md, "Issue 12"); dead_feature_window: steps
    # without firing before aux-k revives a latent (SAELens' default 1,000)
    stage1: Stage1Config = field(
        default_factory=lambda: Stage1Config(
            d_sae=512,
            k=64,
            steps=1500,
            batch_size=1024,
            lr=3e-3,
            dead_feature_window=50,
            init_b_dec="mean",
            model_name="align_lens/bio-tiny",
        )
    )
    stage1_last_tokens: int = 1  # copies of the training questions' last-token activations in the Stage-1 corpus
    # Stage 2's unlabelled rows: "tokens" (every token of the Stage-1 corpus: biographies and questions) keeps the
    # explained variance on question tokens; "bios" (biography tokens only) lets it drift (docs/results.md, issue 12)
    stage2_unlabelled: str = "tokens"
    # reconstruction weight 10: chosen on validation people (benchmarks/swap_protocol.py --tune, docs/results.md)
    align: AlignConfig = field(
        default_factory=lambda: AlignConfig(epochs=4, batch_size=256, weights=LossWeights(reconstruction=10.0))
    )
    alphas: tuple[float, ...] = ALPHAS
    swap_items: int | None = 40  # base prompts per source concept (held-out templates)
    task_items: int | None = 300  # examples for task accuracy with the SAE spliced in
    seed: int = 0
    overwrite: bool = False  # replace out_dir, only if an align_lens run wrote it (files.OUTPUT_MARKER)
    device: str = "cpu"  # model, Stage 1, Stage 2 and evaluation run here
    progress: bool = True
    # seed, device and progress replace the runtime blocks of `stage1` and `align`

    def runtime(self) -> Runtime:
        """The runtime block both stages of this demo run with."""
        return Runtime(device=self.device, seed=self.seed, progress=self.progress)

    def eval_config(self) -> EvalConfig:
        """The evaluation settings of this demo run."""
        return EvalConfig(alphas=self.alphas, swap_items=self.swap_items, task_items=self.task_items, seed=self.seed)


def corpus_texts(world, n_people: int | None, seed: int, ontology=None) -> tuple[list[str], list[str]]:
    """(one biography per person, one training question per person and relation) for the first `n_people`
    people: the Stage-1 corpus. The questions are those of `ontology`'s train split (default
    `world.ontology(n_people)`)."""
    n = n_people or world.n_people
    bios = [d.text for d in world.documents(seed) if d.loss_from == 0][:n]
    rng = random.Random(seed)
    by_key: dict[tuple, list[str]] = {}
    for e in (ontology or world.ontology(n)).select("train"):
        by_key.setdefault((e.entity, e.concept), []).append(e.prompt)
    return bios, [rng.choice(prompts) for prompts in by_key.values()]


def bpe_demo_config(**overrides: Any) -> DemoConfig:
    """The demo on the BPE biography world (`--world bio-bpe`): the shipped GPT-2-shaped model read at
    `BPE_HOOK`, the first 150 people (train people × training phrasings; held out: the held-out phrasings), a
    Stage-1 SAE of 8 × d_model latents (600 steps), swaps on 10 base prompts per concept at the α around the one
    chosen on validation people by benchmarks/bpe_protocol.py (1.0–1.25): sized to the 5-minute budget."""
    stage1 = Stage1Config(
        d_sae=2048,
        k=32,
        steps=600,
        batch_size=1024,
        lr=3e-3,
        dead_feature_window=50,
        init_b_dec="mean",
        model_name="align_lens/bio-bpe",
    )
    base = DemoConfig(
        out_dir="runs/demo_bpe",
        world="bio-bpe",
        hook_name=BPE_HOOK,
        n_people=150,
        stage1=stage1,
        swap_items=10,
        alphas=BPE_ALPHAS,
    )
    return replace(base, **overrides)


def _inputs(cfg: DemoConfig):
    """(model, world, ontology) of `cfg.world`."""
    if cfg.world == "bio":
        world = load_base_world(cfg.model_path)
        return load_base_model(cfg.model_path, device=cfg.device), world, world.ontology(cfg.n_people)
    if cfg.world == "bio-bpe":
        from align_lens.worlds.bpe_model import load_bpe_model, load_bpe_world

        world = load_bpe_world(cfg.model_path)
        model = load_bpe_model(cfg.model_path, device=cfg.device)
        return model, world, world.ontology("phrasings", cfg.n_people)
    raise ValueError(f"world must be 'bio' or 'bio-bpe', got {cfg.world!r}")


def run_demo(cfg: DemoConfig | None = None) -> dict[str, Any]:
    """Run the whole pipeline and write `cfg.out_dir`/{aligned_sae/, stage1_sae/, ontology.json, results.json,
    report.html}."""
    cfg = cfg or DemoConfig()
    with output_folder(cfg.out_dir, cfg.overwrite, [cfg.model_path]) as stage:
        return _run_into(stage, cfg)


def _run_into(stage: Path, cfg: DemoConfig) -> dict[str, Any]:
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    model, world, ontology = _inputs(cfg)
    bios, questions = corpus_texts(world, cfg.n_people, cfg.seed, ontology)
    bio_acts = gather_token_activations(model, bios, cfg.hook_name, progress=cfg.progress)
    question_acts = gather_token_activations(model, questions, cfg.hook_name, progress=cfg.progress)
    token_acts = torch.cat([bio_acts, question_acts])
    split_acts = split_activations(model, ontology, cfg.hook_name, cfg.align.gather_batch_size)
    timings["activations_s"] = time.perf_counter() - t0

    t = time.perf_counter()
    corpus = torch.cat([token_acts, *[split_acts["train"]] * cfg.stage1_last_tokens])
    batch_size = min(cfg.stage1.batch_size, len(corpus))
    stage1_cfg = replace(cfg.stage1, batch_size=batch_size, hook_name=cfg.hook_name, runtime=cfg.runtime())
    stage1 = pretrain_sae(corpus, stage1_cfg)
    timings["stage1_s"] = time.perf_counter() - t

    t = time.perf_counter()
    align_cfg = replace(cfg.align, hook_name=cfg.hook_name, runtime=cfg.runtime())
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
    config_dict = asdict(cfg) | {"stage1": asdict(stage1_cfg), "align": asdict(align_cfg)}
    record = {
        "summary": summary,
        "timings": timings,
        "config": config_dict,
        "results": results,
        "silence_on_biographies": silence,
        "history": aligned.history.steps,
    }
    (stage / "results.json").write_text(strict_json(record))
    sections = evaluation_sections(results)
    sections[1:1] = [
        ("Timings (s)", [{"step": k, "seconds": v} for k, v in timings.items()]),
        ("Stage-2 losses", figures.loss_curves(aligned.history)),
    ]
    world_name = {"bio": "the synthetic biography world", "bio-bpe": "the BPE biography world"}[cfg.world]
    write_report(stage / "report.html", f"align_lens demo: AlignSAE on {world_name}", sections)
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
