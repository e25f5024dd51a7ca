"""Baselines for concept binding and swapping, run under the same protocol as aligned slots.

* `stage1_best_latents`: the unsupervised (Stage-1) SAE's best single latent per concept, matched one-to-one by
  the Hungarian algorithm over all latents on a selectivity score; binding = argmax over the matched latents;
  swap = zero A's latent and set B's latent (delta edit, `interventions.LatentEditor`).
* `diffmean_directions`: class means; swap h ← h + α(mean_B − mean_A) (`interventions.DirectionEditor`).
* `linear_probe`: multinomial logistic regression on the activations (the binding upper bound); swap along its
  read-out directions with `DirectionEditor(probe_directions(probe, means))`.
* `compare_baselines`: all of them next to the aligned slots, in binding, swap and fidelity.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.evals.binding import binding_metrics, encode_in_chunks, fragmentation, hungarian
from align_lens.evals.evaluate import EvalConfig, evaluate, headline, split_activations, swap_headline
from align_lens.interventions.editors import ALPHAS, DirectionEditor, LatentEditor, PaperSlotEditor, SteerSlotEditor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.interventions.trials import SwapTrial
from align_lens.ontology import Ontology


@torch.no_grad()
def stage1_best_latents(
    sae,
    acts: Float[Tensor, "n d_in"],
    labels: Int[Tensor, " n"],
    names: Sequence[str] | None = None,
    heldout_acts: Float[Tensor, "m d_in"] | None = None,
    heldout_labels: Int[Tensor, " m"] | None = None,
) -> dict[str, Any]:
    """Best single latent of an unsupervised SAE for each concept.

    Selectivity of latent j for concept c = (mean_j on c − mean_j on the other concepts) / (std_j + 1e-6), over
    every latent. Concepts are matched one-to-one to latents by `linear_sum_assignment` on that score; binding
    accuracy is argmax over the matched latents. Returns {latents, scores (matched selectivity), best_unmatched
    (each concept's own best latent), scales (mean activation of the matched latent on its concept), binding
    (train), binding_heldout (if given), fragmentation (over all latents, with the matched latents as "slots")}.
    """
    y = labels.long().cpu()
    c = int(y.max()) + 1 if names is None else len(names)
    names = list(names) if names is not None else [str(i) for i in range(c)]
    z = encode_in_chunks(sae, acts)
    means = torch.stack([z[y == i].mean(0) for i in range(c)])  # c x d_sae
    off = torch.stack([z[y != i].mean(0) for i in range(c)])
    std = z.std(0) + 1e-6
    score = ((means - off) / std).numpy()
    latents = hungarian(score)
    scales = [float(means[i, j]) for i, j in enumerate(latents)]
    out = {
        "latents": latents,
        "scores": [float(score[i, j]) for i, j in enumerate(latents)],
        "best_unmatched": [int(np.argmax(score[i])) for i in range(c)],
        "scales": scales,
        "binding": binding_metrics(z[:, latents], y, names),
        "fragmentation": fragmentation(z, y, latents, names),
        "names": names,
    }
    if heldout_acts is not None and heldout_labels is not None:
        out["binding_heldout"] = binding_metrics(encode_in_chunks(sae, heldout_acts)[:, latents], heldout_labels, names)
    return out


def stage1_editor(sae, best: dict[str, Any], hook_name: str | None = None) -> LatentEditor:
    """Swap editor over the latents found by `stage1_best_latents`."""
    return LatentEditor(sae, best["latents"], best["names"], best["scales"], hook_name)


@torch.no_grad()
def diffmean_directions(
    acts: Float[Tensor, "n d"], labels: Int[Tensor, " n"], n_concepts: int | None = None
) -> dict[str, Tensor]:
    """Class means and DiffMean directions (class mean minus the mean of the other classes).

    Returns {"means": [c, d], "directions": [c, d], "units": unit directions}. The swap is
    h ← h + α(mean_B − mean_A) (`DirectionEditor(means)`), so α = 1 moves A's class mean onto B's.
    """
    y = labels.long().cpu()
    c = n_concepts or int(y.max()) + 1
    x = acts.float().cpu()
    means = torch.stack([x[y == i].mean(0) for i in range(c)])
    dirs = torch.stack([means[i] - x[y != i].mean(0) for i in range(c)])
    return {"means": means, "directions": dirs, "units": dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-8)}


def diffmean_binding(acts: Tensor, labels: Tensor, dm: dict[str, Tensor], names: Sequence[str]) -> dict[str, Any]:
    """Binding with DiffMean directions as detectors: argmax_c ⟨h, unit_c⟩."""
    return binding_metrics(acts.float().cpu() @ dm["units"].T, labels, names)


def linear_probe(
    acts: Float[Tensor, "n d"],
    labels: Int[Tensor, " n"],
    heldout_acts: Float[Tensor, "m d"] | None = None,
    heldout_labels: Int[Tensor, " m"] | None = None,
    names: Sequence[str] | None = None,
    steps: int = 300,
    lr: float = 0.05,
    weight_decay: float = 1e-3,
    seed: int = 0,
) -> dict[str, Any]:
    """Multinomial logistic regression on standardised activations (full-batch Adam).

    Returns {train_accuracy, heldout_accuracy, binding (train), binding_heldout, weight [c, d], bias [c],
    mean, std} — the upper bound any single-layer linear readout (including concept slots) can reach.
    """
    torch.manual_seed(seed)
    x = acts.float().cpu()
    y = labels.long().cpu()
    c = len(names) if names is not None else int(y.max()) + 1
    names = list(names) if names is not None else [str(i) for i in range(c)]
    mu, sd = x.mean(0), x.std(0) + 1e-6
    xs = (x - mu) / sd
    lin = torch.nn.Linear(x.shape[1], c)
    opt = torch.optim.Adam(lin.parameters(), lr=lr, weight_decay=weight_decay)
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(lin(xs), y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        logits = lin(xs)
        out = {
            "train_accuracy": float((logits.argmax(-1) == y).float().mean()),
            "binding": binding_metrics(logits, y, names),
            "weight": lin.weight.detach().clone(),
            "bias": lin.bias.detach().clone(),
            "mean": mu,
            "std": sd,
            "final_loss": float(loss),
        }
        if heldout_acts is not None and heldout_labels is not None:
            hl = lin((heldout_acts.float().cpu() - mu) / sd)
            out["heldout_accuracy"] = float((hl.argmax(-1) == heldout_labels.long().cpu()).float().mean())
            out["binding_heldout"] = binding_metrics(hl, heldout_labels, names)
    return out


def probe_directions(probe: dict[str, Any], means: Float[Tensor, "c d"]) -> Float[Tensor, "c d"]:
    """One vector per class along its probe weight in activation space (W_c / std), scaled to the norm of that
    class mean's offset from the average class mean: `DirectionEditor(probe_directions(...))` patches along the
    probe's own read-out directions at DiffMean's scale (α = 1 moves as far as the class means lie apart)."""
    w = probe["weight"] / probe["std"]
    unit = w / w.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return unit * (means - means.mean(0)).norm(dim=-1, keepdim=True)


def compare_baselines(
    model,
    stage1_sae,
    aligned,
    ontology: Ontology,
    alphas: Sequence[float] = ALPHAS,
    steer_alphas: Sequence[float] = (0.25, 0.5, 1.0, 2.0),  # fractions of ‖h‖: the default grid would overshoot
    max_items: int | None = 20,
    swap_split: str = "heldout",
    batch_size: int = 128,
    task_items: int | None = 120,
    train_acts: Tensor | None = None,
    heldout_acts: Tensor | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Aligned slots vs the Stage-1 SAE's best latents vs DiffMean vs a linear probe, side by side.

    All methods read and edit the same hook (the aligned SAE's) and swap on the same trials (`swap_split`
    prompts, at most `max_items` per source concept), over `alphas` in each editor's unit (slots (delta) and
    Stage-1 latents in × the concept's typical activation, paper mode in absolute slot value, DiffMean in × the
    class-mean difference) except steer mode, whose unit (× ‖h‖) has its own grid `steer_alphas`. The "aligned slots (delta)" row is the headline of
    `evals.evaluate` (with the Stage-1 SAE as reference, so it carries both SAEs' fidelity and spliced task
    accuracy: `*_aligned` / `*_stage1`); every row uses `evaluate`'s key names. Returns {"rows": [one dict per
    method], "swaps": {method: SwapResults.to_dict()}, "stage1": matched latents, scores and scales}.
    """
    hook = aligned.cfg.metadata.hook_name
    names = list(aligned.cfg.concept_names)
    if stage1_sae.cfg.metadata.hook_name is None:
        stage1_sae.cfg.metadata.hook_name = hook
    given = {k: v for k, v in (("train", train_acts), ("heldout", heldout_acts)) if v is not None}
    if train_acts is None or (heldout_acts is None and ontology.select("heldout")):
        given = split_activations(model, ontology, hook, batch_size) | given
    acts: dict[str, Tensor] = given
    train_acts, heldout_acts = acts["train"], acts.get("heldout")
    y_train = ontology.labels("train", order=names)
    y_held = ontology.labels("heldout", order=names) if heldout_acts is not None else None
    config = EvalConfig(
        alphas=tuple(alphas),
        split=swap_split,
        swap_items=max_items,
        task_items=task_items,
        batch_size=batch_size,
        seed=seed,
    )
    result = evaluate(model, aligned, ontology, config, stage1=stage1_sae, acts=acts)
    trials = [SwapTrial(**t) for t in result["swap"]["trials"]]
    swaps = {"aligned_delta": result["swap"]}

    def run_swaps(key: str, editor, a: Sequence[float]) -> dict[str, Any]:
        res = evaluate_swaps(model, editor, trials=trials, alphas=a, batch_size=batch_size, lookup=ontology, seed=seed)
        swaps[key] = res.to_dict()
        return swap_headline(res)

    rows = [{"method": "aligned slots (delta)"} | headline(result)]
    rows.append({"method": "aligned slots (paper)", **run_swaps("aligned_paper", PaperSlotEditor(aligned), alphas)})
    rows.append(
        {"method": "aligned slots (steer)", **run_swaps("aligned_steer", SteerSlotEditor(aligned), steer_alphas)}
    )

    best = stage1_best_latents(stage1_sae, train_acts, y_train, names, heldout_acts, y_held)
    row = {"method": "stage-1 SAE best latents", "binding_train": best["binding"]["accuracy"]}
    if "binding_heldout" in best:
        row["binding_heldout"] = best["binding_heldout"]["accuracy"]
        row["binding_heldout_hungarian"] = best["binding_heldout"]["hungarian_accuracy"]
    row |= {k: best["fragmentation"]["mean"][k] for k in ("eff_feat_slots", "eff_feat_all")}
    row |= run_swaps("stage1_latents", stage1_editor(stage1_sae, best, hook), alphas)
    rows.append(row)

    dm = diffmean_directions(train_acts, y_train, len(names))
    row = {"method": "DiffMean", "binding_train": diffmean_binding(train_acts, y_train, dm, names)["accuracy"]}
    if heldout_acts is not None and y_held is not None:
        row["binding_heldout"] = diffmean_binding(heldout_acts, y_held, dm, names)["accuracy"]
    row |= run_swaps("diffmean", DirectionEditor(dm["means"], names, hook), alphas)
    rows.append(row)

    probe = linear_probe(train_acts, y_train, heldout_acts, y_held, names)
    rows.append(
        {
            "method": "linear probe",
            "binding_train": probe["train_accuracy"],
            "binding_heldout": probe.get("heldout_accuracy", float("nan")),
        }
    )
    return {"rows": rows, "swaps": swaps, "stage1": {k: best[k] for k in ("latents", "scores", "scales")}}
