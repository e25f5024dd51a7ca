"""Binding of concepts to slots: accuracy (diagonal and Hungarian), fragmentation, off-ontology silence.

Every function returns plain Python (floats, lists, dicts) so results can go straight into JSON.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

# =============================================================================================
# binding
# =============================================================================================


TOP_K = 5  # top5_accuracy: the true column among this many largest
MAX_MATRIX_CONCEPTS = 2000  # binding_metrics builds the c × k matrices and the matching up to this many concepts


def _as_long(labels) -> Tensor:
    return labels.long().cpu() if isinstance(labels, Tensor) else torch.as_tensor(labels, dtype=torch.long)


def hungarian(score: np.ndarray, maximize: bool = True) -> list[int]:
    """Column assigned to each row of a (rows ≤ cols) score matrix by `scipy.optimize.linear_sum_assignment`."""
    score = np.asarray(score, dtype=float)
    if score.shape[0] > score.shape[1]:
        raise ValueError(f"need at least as many columns as rows for a matching, got {score.shape}")
    rows, cols = linear_sum_assignment(np.nan_to_num(score, nan=-np.inf if maximize else np.inf), maximize=maximize)
    out = [-1] * score.shape[0]
    for r, c in zip(rows, cols):
        out[int(r)] = int(c)
    return out


@torch.no_grad()
def encode_in_chunks(
    sae, acts: Float[Tensor, "n d_in"], concepts_only: bool = False, batch_size: int = 4096
) -> Float[Tensor, "n k"]:
    """`sae.encode` (or `concept_acts`) over `acts` in chunks on the SAE's device; float32 on the CPU."""
    dev = sae.W_dec.device
    fn = sae.concept_acts if concepts_only else sae.encode
    return torch.cat([fn(c.to(dev, sae.dtype)).float().cpu() for c in acts.split(batch_size)])


@torch.no_grad()
def binding_metrics(
    concept_acts: Float[Tensor, "n k"],
    labels: Int[Tensor, " n"],
    names: Sequence[str],
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Binding of concepts to slots (or to any k ≥ c candidate latents, one column each).

    A row whose columns are all exactly 0 (no slot fired) is *silent*: it predicts no concept and counts as a
    miss everywhere (it is left out of the confusion matrix, whose columns are concepts).

    Returns
      accuracy            argmax over the k columns == the label (column c is concept c's slot); this is the
                          AlignSAE slot accuracy, and with balanced classes equals the paper's "diagonal"
      top5_accuracy       the label's column is among the 5 largest (columns tied with it count as larger, so a
                          0 among zeros is no hit); silent rows miss
      n_silent, silent_fraction  rows where no column fired
      diagonal            macro average of per-concept recall (the paper's trace/c of the column-normalised confusion)
      hungarian_accuracy  accuracy after matching concepts to columns by `linear_sum_assignment` on the
                          concept × column argmax-count matrix (permutation-invariant; ≥ accuracy)
      hungarian_assignment  matched column of each concept
      confusion           c × k counts, rows = true concept, cols = argmax column
      confusion_normalized  rows divided by their concept's number of rows (silent rows included)
      mean_activation     c × k mean column activation per true concept
      (these five are None above MAX_MATRIX_CONCEPTS concepts: the c × k matrices grow as c², 3.2 GB of counts
      at 20,000, and the matching as c³; the per-concept numbers below are linear in c and always given)
      per_concept         {name: {accuracy, n, mean_own, margin}}; margin = own column minus best other column
      per_template        {template: accuracy} when `templates` is given
      n
    """
    z = concept_acts.detach().float().cpu()
    y = _as_long(labels)
    names = list(names)
    c, k = len(names), z.shape[1]
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(
            f"concept_acts must be [n, k] with one label per row, got {tuple(z.shape)} and {len(y)} labels"
        )
    if k < c:
        raise ValueError(f"{k} columns cannot bind {c} concepts")
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must be in 0..{c - 1}")
    silent = (z == 0).all(-1)
    pred = torch.where(silent, -1, z.argmax(-1))
    n_of = torch.bincount(y, minlength=c)
    counts = n_of.clamp_min(1)  # silent rows count in the denominator
    own = z[torch.arange(len(y)), y] if len(y) else z.new_zeros(0)
    others = z[:, :c].clone() if len(y) else z.new_zeros(0, c)
    if len(y):
        others[torch.arange(len(y)), y] = -float("inf")
    margin = own - others.max(-1).values if len(y) else own
    top5 = ~silent & ((z >= own[:, None]).sum(-1) <= TOP_K)  # the own column plus < TOP_K others at or above it

    def per_concept_mean(values: Tensor) -> list[float]:  # mean over each concept's rows (NaN for none)
        sums = torch.zeros(c, dtype=torch.float64).index_add_(0, y, values.double())
        return torch.where(n_of > 0, sums / counts, float("nan")).tolist()

    accuracy, mean_own, mean_margin = (per_concept_mean(v) for v in ((pred == y).double(), own, margin))
    per_concept = {
        name: {"accuracy": accuracy[i], "n": int(n_of[i]), "mean_own": mean_own[i], "margin": mean_margin[i]}
        for i, name in enumerate(names)
    }
    matrices: dict[str, Any] = dict.fromkeys(
        ("hungarian_accuracy", "hungarian_assignment", "confusion", "confusion_normalized", "mean_activation")
    )
    if c <= MAX_MATRIX_CONCEPTS:
        conf = torch.zeros(c, k, dtype=torch.long)
        conf.index_put_((y[~silent], pred[~silent]), torch.ones_like(y[~silent]), accumulate=True)
        sums = torch.zeros(c, k).index_add_(0, y, z)
        mean_act = torch.where(n_of[:, None] > 0, sums / counts[:, None], float("nan"))
        assign = hungarian(conf.numpy())
        matched = torch.tensor(assign)[y]
        matrices = {
            "hungarian_accuracy": float((pred == matched).float().mean()) if len(y) else float("nan"),
            "hungarian_assignment": assign,
            "confusion": conf.tolist(),
            "confusion_normalized": (conf.float() / counts[:, None]).tolist(),
            "mean_activation": mean_act.tolist(),
        }
    out = {
        "accuracy": float((pred == y).float().mean()) if len(y) else float("nan"),
        "top5_accuracy": float(top5.float().mean()) if len(y) else float("nan"),
        "diagonal": float(np.nanmean(accuracy)),
        "n_silent": int(silent.sum()),
        "silent_fraction": float(silent.float().mean()) if len(y) else float("nan"),
        **matrices,
        "per_concept": per_concept,
        "names": names,
        "n": len(y),
    }
    if templates is not None:
        if len(templates) != len(y):
            raise ValueError(f"{len(templates)} templates for {len(y)} rows")
        hit = (pred == y).tolist()
        groups: dict[str, list[bool]] = {}
        for t, h in zip(templates, hit):
            groups.setdefault(str(t), []).append(h)
        out["per_template"] = {t: float(np.mean(h)) for t, h in sorted(groups.items())}
    return out


# =============================================================================================
# fragmentation
# =============================================================================================


def _eff(mass: Tensor) -> tuple[float, float, int]:
    total = mass.sum()
    if total <= 0:
        return float("nan"), float("nan"), -1
    p = mass / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return math.exp(entropy), float(p.max()), int(p.argmax())


@torch.no_grad()
def fragmentation(
    acts: Float[Tensor, "n d_sae"],
    labels: Int[Tensor, " n"],
    slot_indices: Sequence[int],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """How spread out each concept is over latents (AlignSAE's EffFeat / Top1C).

    For concept c, the mass of latent j is the mean positive activation of j over c's examples.
    EffFeat = exp(entropy of the normalised mass) (1 = one latent carries everything), top1 = the largest share.
    Both are reported over the concept's candidate latents (`slot_indices`, one per concept: the AlignSAE
    comparison) and over all latents (the fair comparison between SAEs).

    Returns {"per_concept": {name: {eff_feat_slots, top1_slots, top1_slot_is_own, eff_feat_all, top1_all,
    top1_latent_all}}, "mean": {same keys, averaged}}.
    """
    a = acts.detach().float().cpu().clamp_min(0)
    y = _as_long(labels)
    slots = list(slot_indices)
    names = list(names) if names is not None else [str(i) for i in range(len(slots))]
    per = {}
    order = torch.argsort(y, stable=True)  # each concept's rows, found in one sort rather than one scan per concept
    rows_of = order.split(torch.bincount(y, minlength=len(names)).tolist())
    for i, name in enumerate(names):
        mass = a[rows_of[i]].mean(0) if len(rows_of[i]) else a.new_zeros(a.shape[1])
        e_s, t_s, arg_s = _eff(mass[slots])
        e_a, t_a, arg_a = _eff(mass)
        per[name] = {
            "eff_feat_slots": e_s,
            "top1_slots": t_s,
            "top1_slot_is_own": arg_s == i,
            "eff_feat_all": e_a,
            "top1_all": t_a,
            "top1_latent_all": arg_a,
        }
    keys = ("eff_feat_slots", "top1_slots", "eff_feat_all", "top1_all")
    mean = {k: float(np.nanmean([v[k] for v in per.values()])) for k in keys}
    return {"per_concept": per, "mean": mean}


# =============================================================================================
# off-ontology silence
# =============================================================================================


@torch.no_grad()
def off_ontology_silence(
    sae, acts_without_concepts: Float[Tensor, "n d_in"], threshold: float = 0.0, batch_size: int = 4096
) -> dict[str, Any]:
    """Do the concept slots stay quiet on activations that carry no concept (e.g. every token of ordinary text)?

    Returns per slot {fire_rate (fraction > threshold), mean, max, mean_relative (mean / concept scale)} and the
    averages over slots ("mean_fire_rate", "max_activation").
    """
    names = list(sae.cfg.concept_names)
    scales = list(getattr(sae.cfg, "concept_scales", [1.0] * len(names)))
    z = encode_in_chunks(sae, acts_without_concepts, concepts_only=True, batch_size=batch_size)
    per = {}
    for i, n in enumerate(names):
        col = z[:, i]
        per[n] = {
            "fire_rate": float((col > threshold).float().mean()),
            "mean": float(col.mean()),
            "max": float(col.max()),
            "mean_relative": float(col.mean()) / (scales[i] or 1.0),
        }
    return {
        "per_concept": per,
        "mean_fire_rate": float(np.mean([v["fire_rate"] for v in per.values()])),
        "max_activation": float(z.max()) if z.numel() else float("nan"),
        "n": len(z),
    }
