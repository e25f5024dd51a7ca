"""Studies: Stage 1 + Stage 2 at every residual hook (layer sweep) and ablations of the Stage-2 recipe.

Both return tables (lists of flat dicts) ready for `figures.layer_sweep_figure` or a DataFrame. Defaults are
small so the studies run on a CPU in minutes; raise `Stage1Config.steps`, `AlignConfig.epochs` and
`max_items` for publication numbers.
"""

from __future__ import annotations

import copy
import time
import warnings
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from align_lens.adapter import residual_hooks
from align_lens.analysis.baselines import stage1_best_latents
from align_lens.evals.evaluate import EvalConfig, evaluate, headline, split_activations
from align_lens.ontology import Ontology
from align_lens.training.config import AlignConfig, Runtime, Stage1Config, binding_for
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align

STUDY_EVAL = EvalConfig(swap_items=10, task_accuracy=False)
STUDY_ALIGN = AlignConfig(epochs=10, runtime=Runtime(progress=False))


def study_stage1(model) -> Stage1Config:
    """The studies' default Stage 1: a TopK SAE (k 16) with 8 × d_model latents, 500 steps of 256 rows."""
    return Stage1Config(d_sae=8 * model.cfg.d_model, k=16, steps=500, batch_size=256, runtime=Runtime(progress=False))


def _block_of(hook: str) -> int | None:
    """The block index in a `blocks.N.` hook name (None for hooks outside the blocks)."""
    parts = hook.split(".")
    return int(parts[1]) if len(parts) > 2 and parts[0] == "blocks" and parts[1].isdigit() else None


def layer_sweep(
    model,
    ontology: Ontology,
    hooks: Sequence[str] | None = None,
    stage1: Stage1Config | None = None,
    align_config: AlignConfig | None = None,
    eval_config: EvalConfig | None = None,
    keep_saes: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Stage 1 (`pretrain_sae` with `stage1`, default `study_stage1`) + Stage 2 (`align`) at each hook (default:
    every residual hook, each block's `hook_resid_mid` included), then binding
    (train and held-out templates), fidelity, fragmentation and swap success, measured by `evaluate` with
    `eval_config` (default `STUDY_EVAL`: swaps over α ∈ {0.5, 1, 2, 4} on 10 prompts per concept, no task accuracy;
    `EvalConfig(swaps=False)` skips swaps).

    Returns {"table": [one row per hook: hook, layer (its block), order (forward position), every `evaluate`
    headline number, stage1_binding_heldout (best single Stage-1 latent per concept), seconds],
    "saes": {hook: AlignedSAE} when keep_saes}.
    """
    hooks = list(hooks or residual_hooks(model, mid=True))
    cfg, s1 = align_config or STUDY_ALIGN, stage1 or study_stage1(model)
    ev = eval_config or STUDY_EVAL
    table, saes = [], {}
    for i, hook in enumerate(hooks):
        t0 = time.time()
        acts = split_activations(model, ontology, hook, batch_size=256, progress=progress)
        train, held = acts["train"], acts.get("heldout")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = pretrain_sae(train, replace(s1, hook_name=hook))
            aligned = align(sae, ontology, activations=train, config=replace(cfg, hook_name=hook))
        row = {"hook": hook, "layer": _block_of(hook), "order": i} | headline(
            evaluate(model, aligned, ontology, ev, acts=acts)
        )
        best = stage1_best_latents(
            sae,
            train,
            ontology.labels("train"),
            ontology.names,
            held,
            ontology.labels("heldout") if held is not None else None,
        )
        row["stage1_binding_heldout"] = best.get("binding_heldout", best["binding"])["accuracy"]
        row["seconds"] = time.time() - t0
        table.append(row)
        if keep_saes:
            saes[hook] = aligned
    return {"table": table, "saes": saes}


ABLATIONS = (
    "full",
    "no decorrelation",
    "no stage 1 (random SAE)",
    "other binding loss",
    "value heads on",
    "frozen free latents",
    "random slot init",
)


def _random_sae(like: Stage1Config, d_in: int, hook: str, seed: int):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    arch, d_sae = like.architecture, like.d_sae
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch == "topk":
            sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=like.k))
        elif arch == "jumprelu":
            sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=d_in, d_sae=d_sae))
        else:
            sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    sae.cfg.metadata.hook_name = hook
    return sae


def ablations(
    model,
    ontology: Ontology,
    hook: str,
    stage1: Stage1Config | None = None,
    align_config: AlignConfig | None = None,
    eval_config: EvalConfig | None = None,
    variants: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Stage-2 variants at one hook, all from the same Stage-1 SAE (`stage1`, default `study_stage1`, run with the
    Stage-2 runtime and `seed`; except "no stage 1", which aligns a randomly initialised SAE of the same shape). Variants (default: all of `ABLATIONS`):

      full                      the given AlignConfig (default "auto" binding, decorrelation 0.01, LDA init)
      no decorrelation          weights.decorrelation = 0
      no stage 1 (random SAE)   Stage 2 on an untrained SAE
      other binding loss        "ce" (paper) if the config's binding is "mse_onehot" (official code) for this
                                ontology, and vice versa
      value heads on            weights.value = 0.5 (value heads on the reconstruction)
      frozen free latents       train_free = False (only the slots learn)
      random slot init          init = "random" instead of the LDA init

    Returns one flat row per variant: variant, every `evaluate` headline number (`eval_config`, default
    `STUDY_EVAL`), seconds.
    """
    variants = list(variants or ABLATIONS)
    unknown = set(variants) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {ABLATIONS}")
    base = align_config or STUDY_ALIGN
    base = replace(base, hook_name=hook, runtime=replace(base.runtime, seed=seed))
    acts = split_activations(model, ontology, hook, batch_size=256)
    train = acts["train"]
    s1 = replace(stage1 or study_stage1(model), hook_name=hook, runtime=base.runtime)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        first = pretrain_sae(train, s1)
    used = binding_for(base.binding, ontology.n_concepts)
    configs = {
        "full": base,
        "no decorrelation": replace(base, weights=replace(base.weights, decorrelation=0.0)),
        "no stage 1 (random SAE)": base,
        "other binding loss": replace(base, binding="ce" if used == "mse_onehot" else "mse_onehot"),
        "value heads on": replace(base, weights=replace(base.weights, value=0.5)),
        "frozen free latents": replace(base, train_free=False),
        "random slot init": replace(base, init="random"),
    }
    rows = []
    for v in variants:
        t0 = time.time()
        sae = _random_sae(s1, train.shape[1], hook, seed) if v == "no stage 1 (random SAE)" else copy.deepcopy(first)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aligned = align(sae, ontology, model=model, activations=train, config=configs[v])
        row = {"variant": v} | headline(evaluate(model, aligned, ontology, eval_config or STUDY_EVAL, acts=acts))
        row["seconds"] = time.time() - t0
        rows.append(row)
    return rows
