"""Studies: Stage 1 + Stage 2 at every residual hook (layer sweep) and ablations of the Stage-2 recipe.

Both return tables (lists of flat dicts) ready for `figures.layer_sweep_figure` or a DataFrame. Defaults are
small so the studies run on a CPU in minutes; raise `stage1_kwargs["steps"]`, `AlignConfig.epochs` and
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

from align_lens.activations.gather import gather_activations
from align_lens.adapter import residual_hooks
from align_lens.analysis.baselines import stage1_best_latents
from align_lens.evals.binding import binding_metrics, encode_in_chunks, fragmentation
from align_lens.evals.fidelity import fidelity
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.ontology import Ontology
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import AlignConfig, align

DEFAULT_STAGE1 = {"architecture": "topk", "k": 16, "steps": 500, "batch_size": 256}
DEFAULT_SWAP = {"alphas": (0.5, 1.0, 2.0, 4.0), "max_items": 10, "mode": "delta"}


def _stage1_kwargs(model, stage1_kwargs: dict | None) -> dict:
    kw = DEFAULT_STAGE1 | {"d_sae": 8 * model.cfg.d_model} | dict(stage1_kwargs or {})
    return kw


def evaluate_aligned(
    model, aligned, ontology: Ontology, train_acts, heldout_acts, swap_kwargs: dict | None = None
) -> dict[str, Any]:
    """The headline numbers of one aligned SAE as a flat dict (binding train/heldout, fidelity, fragmentation,
    best swap success over α for the three scorers)."""
    names = ontology.names
    row: dict[str, Any] = {}
    row["binding_train"] = binding_metrics(
        encode_in_chunks(aligned, train_acts, concepts_only=True), ontology.labels("train"), names
    )["accuracy"]
    if heldout_acts is not None and len(heldout_acts):
        bh = binding_metrics(
            encode_in_chunks(aligned, heldout_acts, concepts_only=True), ontology.labels("heldout"), names
        )
        row["binding_heldout"] = bh["accuracy"]
        row["hungarian_heldout"] = bh["hungarian_accuracy"]
    fid = fidelity(aligned, train_acts)
    row |= {k: fid[k] for k in ("explained_variance", "l0", "dead_fraction")}
    z = encode_in_chunks(aligned, train_acts)
    row["eff_feat_all"] = fragmentation(z, ontology.labels("train"), aligned.cfg.concept_slots, names)["mean"][
        "eff_feat_all"
    ]
    if swap_kwargs is not False:
        kw = DEFAULT_SWAP | dict(swap_kwargs or {})
        items = ontology.select("heldout") or ontology.select()
        res = evaluate_swaps(model, aligned, items, lookup=ontology, **kw)
        for s in ("exact", "first_token", "lenient"):
            a, v = res.best(s)
            row[f"swap_{s}_best"] = v
            row[f"swap_{s}_alpha"] = a
        row["swap_exact_by_alpha"] = dict(zip(res.alphas, res.success["exact"]))
        row["swap_trials"] = res.counts["n_trials"]
    return row


def layer_sweep(
    model,
    ontology: Ontology,
    hooks: Sequence[str] | None = None,
    stage1_kwargs: dict | None = None,
    align_config: AlignConfig | None = None,
    swap_kwargs: dict | bool | None = None,
    keep_saes: bool = False,
    progress: bool = False,
) -> dict[str, Any]:
    """Stage 1 (`pretrain_sae`) + Stage 2 (`align`) at each hook (default: every residual hook), then binding
    (train and held-out templates), fidelity, fragmentation and swap success (`swap_kwargs=False` skips swaps).

    Returns {"table": [one row per hook: hook, layer, binding_train, binding_heldout, hungarian_heldout,
    stage1_binding_heldout (best single Stage-1 latent per concept), explained_variance, l0, dead_fraction,
    eff_feat_all, swap_*_best / swap_*_alpha, swap_exact_by_alpha, seconds], "saes": {hook: AlignedSAE}
    when keep_saes}.
    """
    hooks = list(hooks or residual_hooks(model))
    cfg = align_config or AlignConfig(epochs=10, progress=False)
    table, saes = [], {}
    for i, hook in enumerate(hooks):
        t0 = time.time()
        train = gather_activations(model, ontology.prompts("train"), hook, batch_size=256, progress=progress)
        held = (
            gather_activations(model, ontology.prompts("heldout"), hook, batch_size=256)
            if ontology.select("heldout")
            else None
        )
        kw = _stage1_kwargs(model, stage1_kwargs)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sae = pretrain_sae(train, hook_name=hook, **kw)
            aligned = align(sae, ontology, activations=train, config=replace(cfg, hook_name=hook))
        row = {"hook": hook, "layer": i}
        row |= evaluate_aligned(model, aligned, ontology, train, held, swap_kwargs)
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


def _random_sae(like_kwargs: dict, d_in: int, hook: str, seed: int):
    from sae_lens import JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

    torch.manual_seed(seed)
    arch, d_sae = like_kwargs["architecture"], like_kwargs["d_sae"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if arch == "topk":
            sae = TopKSAE(TopKSAEConfig(d_in=d_in, d_sae=d_sae, k=like_kwargs["k"]))
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
    stage1_kwargs: dict | None = None,
    align_config: AlignConfig | None = None,
    swap_kwargs: dict | bool | None = None,
    variants: Sequence[str] | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Stage-2 variants at one hook, all from the same Stage-1 SAE (except "no stage 1", which aligns a
    randomly initialised SAE of the same shape). Variants (default: all of `ABLATIONS`):

      full                      the given AlignConfig (default mse_onehot binding, decorrelation 0.01, LDA init)
      no decorrelation          decorrelation_weight = 0
      no stage 1 (random SAE)   Stage 2 on an untrained SAE
      other binding loss        "ce" (paper) if the config uses "mse_onehot" (official code), and vice versa
      value heads on            value_weight = 0.5 (value heads on the reconstruction)
      frozen free latents       train_free = False (only the slots learn)
      random slot init          init = "random" instead of the LDA init

    Returns one flat row per variant (`evaluate_aligned`'s keys plus variant and seconds).
    """
    variants = list(variants or ABLATIONS)
    unknown = set(variants) - set(ABLATIONS)
    if unknown:
        raise ValueError(f"unknown variant(s) {sorted(unknown)}; choose from {ABLATIONS}")
    base = replace(align_config or AlignConfig(epochs=10, progress=False), hook_name=hook, seed=seed)
    train = gather_activations(model, ontology.prompts("train"), hook, batch_size=256)
    held = (
        gather_activations(model, ontology.prompts("heldout"), hook, batch_size=256)
        if ontology.select("heldout")
        else None
    )
    kw = _stage1_kwargs(model, stage1_kwargs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stage1 = pretrain_sae(train, hook_name=hook, seed=seed, **kw)
    configs = {
        "full": base,
        "no decorrelation": replace(base, decorrelation_weight=0.0),
        "no stage 1 (random SAE)": base,
        "other binding loss": replace(base, binding="ce" if base.binding == "mse_onehot" else "mse_onehot"),
        "value heads on": replace(base, value_weight=0.5),
        "frozen free latents": replace(base, train_free=False),
        "random slot init": replace(base, init="random"),
    }
    rows = []
    for v in variants:
        t0 = time.time()
        sae = _random_sae(kw, train.shape[1], hook, seed) if v == "no stage 1 (random SAE)" else copy.deepcopy(stage1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            aligned = align(sae, ontology, model=model, activations=train, config=configs[v])
        row = {"variant": v} | evaluate_aligned(model, aligned, ontology, train, held, swap_kwargs)
        row["seconds"] = time.time() - t0
        rows.append(row)
    return rows
