"""Interventions with concept slots: swaps (A → B), slot interchange between prompts, residual patching.

All edits act on the residual at the SAE's own hook (`cfg.metadata.hook_name`, the site the SAE was trained on),
at the last prompt token, on the prefill pass only. Three swap modes:

  "paper"  z = encode(h); zero A's slot; set B's slot to α; h ← decode(z')          (published; no error term)
  "delta"  h ← h + decode(z') − decode(z), with A's slot zeroed and B's set to α·scale_B   (error term kept; default)
  "steer"  h ← h + α·‖h‖·d_B/‖d_B‖  with d_B B's decoder row (G-SAE-style steering; A is ignored)

where scale_B = cfg.concept_scales[B], the typical on-value of B's slot. The edit functions are also exposed as
"editor" objects (`SlotEditor`, `LatentEditor`, `DirectionEditor`) so baselines run through the same evaluation.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from align_lens.evals import (
    _examples,
    _max_answer_len,
    answer_tokens,
    decode_tokens,
    encode_in_chunks,
    greedy_decode,
    normalize,
    score_generation,
)
from align_lens.ontology import Example, Ontology

MODES = ("paper", "delta", "steer")
SCORERS = ("first_token", "exact", "lenient")


# =============================================================================================
# editors: (h [b, d], source idx [b], target idx [b], alpha) -> h' [b, d]
# =============================================================================================


class Editor:
    """Base class: something that moves a residual from concept A to concept B with strength α."""

    names: list[str]
    hook_name: str | None

    def index(self, name: str | int) -> int:
        if isinstance(name, int):
            return name
        if name not in self.names:
            raise KeyError(f"unknown concept {name!r}; known concepts are {self.names}")
        return self.names.index(name)

    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class LatentEditor(Editor):
    """Delta-mode swap on one chosen latent per concept of any SAE (e.g. a Stage-1 SAE's matched latents):
    zero A's latent, set B's latent to α·scale_B, keep the error term."""

    def __init__(self, sae, latents: Sequence[int], names: Sequence[str], scales: Sequence[float] | None = None,
                 hook_name: str | None = None):  # fmt: skip
        self.sae = sae
        self.names = list(names)
        self.latents = torch.tensor(list(latents))
        self.scales = torch.tensor([float(s) for s in (scales or [1.0] * len(self.names))])
        self.hook_name = hook_name or (sae.cfg.metadata.hook_name if sae.cfg.metadata else None)

    def _edited_codes(self, x: Tensor, src: Tensor, tgt: Tensor, target_value: Tensor) -> tuple[Tensor, Tensor]:
        """(z, z') with A's latent zeroed and B's latent set to `target_value`."""
        ar = torch.arange(len(x), device=x.device)
        lat = self.latents.to(x.device)
        z = self.sae.encode(x)
        z_new = z.clone()
        z_new[ar, lat[src]] = 0.0
        z_new[ar, lat[tgt]] = target_value
        return z, z_new

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        sae = self.sae
        dev = sae.W_dec.device
        x = h.to(dev, sae.dtype)
        src, tgt = src.to(dev), tgt.to(dev)
        z, z_new = self._edited_codes(x, src, tgt, alpha * self.scales.to(dev, x.dtype)[tgt])
        return (x + (z_new - z) @ sae.W_dec).to(h.device, h.dtype)  # = h + decode(z') − decode(z)


class SlotEditor(LatentEditor):
    """Swap edits in the concept-slot space of an AlignedSAE (see the module docstring for the modes)."""

    def __init__(self, aligned, mode: str = "delta", hook_name: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        cfg = aligned.cfg
        super().__init__(aligned, cfg.concept_slots, cfg.concept_names, cfg.concept_scales, hook_name)
        self.mode = mode

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        if self.mode == "delta":
            return super().__call__(h, src, tgt, alpha)
        sae = self.sae
        dev = sae.W_dec.device
        x = h.to(dev, sae.dtype)
        src, tgt = src.to(dev), tgt.to(dev)
        if self.mode == "steer":
            d = sae.W_dec[self.latents.to(dev)[tgt]]
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            return (x + alpha * x.norm(dim=-1, keepdim=True) * d).to(h.device, h.dtype)
        _, z_new = self._edited_codes(x, src, tgt, torch.full((len(x),), alpha, device=dev, dtype=x.dtype))
        return sae.decode(z_new).to(h.device, h.dtype)  # paper: the reconstruction replaces h


class DirectionEditor(Editor):
    """Steering with one vector per concept: h ← h + α·(v_B − v_A) (DiffMean when v are class means;
    α = 1 moves A's mean onto B's mean)."""

    def __init__(self, vectors: Float[Tensor, "c d"], names: Sequence[str], hook_name: str | None = None):
        self.vectors = vectors.detach().float()
        self.names = list(names)
        self.hook_name = hook_name

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        v = self.vectors.to(h.device)
        return (h.float() + alpha * (v[tgt.to(h.device)] - v[src.to(h.device)])).to(h.dtype)


def as_editor(obj, mode: str = "delta", hook_name: str | None = None) -> Editor:
    """An AlignedSAE becomes a `SlotEditor(mode)`; an Editor passes through."""
    if isinstance(obj, Editor):
        if hook_name is not None:
            obj.hook_name = hook_name
        return obj
    if hasattr(obj, "cfg") and getattr(obj.cfg, "concept_names", None):
        return SlotEditor(obj, mode, hook_name)
    raise TypeError(f"expected an AlignedSAE or an Editor, got {type(obj).__name__}")


def edit_residual(aligned, h: Tensor, source: str, target: str, alpha: float, mode: str = "delta") -> Tensor:
    """Apply one swap edit to residual vectors h [..., d] (no model involved)."""
    ed = as_editor(aligned, mode)
    flat = h.reshape(-1, h.shape[-1])
    n = len(flat)
    src = torch.full((n,), ed.index(source), dtype=torch.long)
    tgt = torch.full((n,), ed.index(target), dtype=torch.long)
    return ed(flat, src, tgt, alpha).reshape(h.shape)


# =============================================================================================
# hooks for model.hooks / run_with_hooks / generate
# =============================================================================================


def swap_hooks(
    aligned,
    source: str,
    target: str,
    alpha: float,
    mode: str = "delta",
    position: int | Tensor = -1,
    hook_name: str | None = None,
    prefill_only: bool = True,
) -> list[tuple[str, Callable]]:
    """Forward hooks that swap concept `source` for `target` at `position`.

    Use with `with model.hooks(fwd_hooks=swap_hooks(...)):`, `model.run_with_hooks(..., fwd_hooks=...)` or around
    `model.generate(...)`. The edit is applied only on passes that see more than one token, i.e. the prefill
    pass of a KV-cached `generate` (its later passes see one new token and are left alone). `position` is an
    index into the sequence (default -1 = last prompt token; with several prompts of different lengths pass a
    LongTensor of absolute positions, one per row). With `generate(use_past_kv_cache=False)` every pass re-runs
    the whole sequence, so give an absolute position (≥ 0) there. `prefill_only=False` edits one-token passes too.
    `aligned` may also be an `Editor` (baselines).
    """
    ed = as_editor(aligned, mode, hook_name)
    if ed.hook_name is None:
        raise ValueError("no hook name: the SAE has no cfg.metadata.hook_name; pass hook_name=")
    s, t = ed.index(source), ed.index(target)

    def hook_fn(x: Tensor, hook) -> Tensor:
        if prefill_only and x.shape[1] == 1:
            return x  # a KV-cache decode step
        b = x.shape[0]
        pos = position.to(x.device) if isinstance(position, Tensor) else torch.full((b,), position, device=x.device)
        pos = torch.where(pos < 0, pos + x.shape[1], pos)
        ar = torch.arange(b, device=x.device)
        x = x.clone()
        src = torch.full((b,), s, dtype=torch.long)
        tgt = torch.full((b,), t, dtype=torch.long)
        x[ar, pos] = ed(x[ar, pos], src, tgt, alpha).to(x.dtype)
        return x

    return [(ed.hook_name, hook_fn)]


# =============================================================================================
# swap evaluation
# =============================================================================================


def answer_lookup(source: Ontology | Sequence[Example] | Mapping) -> dict[tuple[str, str], str]:
    """(entity, concept) → answer, from every example that has both (the ontology holds every relation of
    every entity, over all its splits)."""
    if isinstance(source, Mapping):
        return dict(source)
    out: dict[tuple[str, str], str] = {}
    for e in _examples(source):
        if e.entity is not None and e.answer is not None:
            out.setdefault((e.entity, e.concept), e.answer)
    return out


def _sample_per_concept(items: list[Example], names: list[str], max_items: int | None, seed: int) -> list[Example]:
    if max_items is None:
        return items
    rng = random.Random(seed)
    out = []
    for n in names:
        group = [e for e in items if e.concept == n]
        out += rng.sample(group, min(max_items, len(group)))
    return out


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a rate k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


@dataclass
class SwapResults:
    """Swap success by α for each scorer ("first_token", "exact", "lenient"), per-pair matrices
    (rows = source A, cols = target B), kept-A and type-B rates, counts and a few example generations."""

    mode: str
    names: list[str]
    alphas: list[float]
    success: dict[str, list[float]]  # scorer -> one rate per alpha
    ci: dict[str, list[tuple[float, float]]]  # scorer -> Wilson 95% interval per alpha
    pair: dict[str, list[list[list[float]]]]  # scorer -> alpha -> c x c
    kept_source: list[float]  # output is still A's answer
    type_target: list[float]  # output is some value of B's type
    clean_accuracy: float  # exact accuracy of the unedited model on the base prompts
    counts: dict[str, Any]
    examples: list[dict[str, Any]] = field(default_factory=list)

    def best(self, scorer: str = "exact") -> tuple[float, float]:
        """(α, success) at the α with the highest success for `scorer`."""
        rates = self.success[scorer]
        i = int(np.nanargmax(rates))
        return self.alphas[i], rates[i]

    def table(self) -> list[dict[str, float]]:
        """One row per α: the three success rates, kept-A and type-B."""
        return [
            {"alpha": a, **{s: self.success[s][i] for s in SCORERS},
             "kept_source": self.kept_source[i], "type_target": self.type_target[i]}  # fmt: skip
            for i, a in enumerate(self.alphas)
        ]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@torch.no_grad()
def evaluate_swaps(
    model,
    aligned,
    examples: Ontology | Sequence[Example],
    alphas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0),
    mode: str = "delta",
    max_items: int | None = None,
    batch_size: int = 128,
    lookup: Ontology | Sequence[Example] | Mapping | None = None,
    max_new_tokens: int | None = None,
    n_show: int = 6,
    seed: int = 0,
    hook_name: str | None = None,
) -> SwapResults:
    """Swap every ordered concept pair (A, B) on prompts of concept A and check for the same entity's B answer.

    `examples` are the base prompts (an Ontology means all its examples; pass `ontology.select("heldout")` for
    held-out templates). `lookup` gives (entity, concept) → answer (default: built from `examples`; pass the full
    ontology when `examples` is a subset). `max_items` caps the base prompts per source concept (seeded sample).
    Trials where A's and B's answers coincide, or B's answer is unknown, are skipped and counted.
    `aligned` may be an AlignedSAE (edited with `mode`) or any `Editor` (baselines).
    """
    ed = as_editor(aligned, mode, hook_name)
    if ed.hook_name is None:
        raise ValueError("no hook name: set the SAE's cfg.metadata.hook_name or pass hook_name=")
    names = list(ed.names)
    table = answer_lookup(lookup if lookup is not None else examples)
    values: dict[str, set[str]] = {}
    for (_, c), a in table.items():
        values.setdefault(c, set()).add(normalize(a))
    pool = [e for e in _examples(examples) if e.entity is not None and e.answer is not None and e.concept in names]
    if not pool:
        raise ValueError("no base examples with entity, answer and a known concept")
    items = _sample_per_concept(pool, names, max_items, seed)
    trials, skipped_same, skipped_missing = [], 0, 0
    for i, e in enumerate(items):
        a = names.index(e.concept)
        for b, nb in enumerate(names):
            if b == a:
                continue
            gold = table.get((e.entity, nb))
            if gold is None:
                skipped_missing += 1
            elif normalize(gold) == normalize(e.answer):
                skipped_same += 1
            else:
                trials.append((i, a, b, gold))
    if not trials:
        raise ValueError("no swap trials: every target answer was missing or equal to the source answer")
    c = len(names)
    max_new = max_new_tokens or _max_answer_len(model, list(table.values())) + 1
    from align_lens.activations import tokenize

    item_toks = tokenize(model, [e.prompt for e in items])
    trial_toks = [item_toks[i] for i, _, _, _ in trials]
    src = torch.tensor([a for _, a, _, _ in trials])
    tgt = torch.tensor([b for _, _, b, _ in trials])
    gold_ids = {}
    for _, _, _, g in trials:
        if g not in gold_ids:
            gold_ids[g] = answer_tokens(model, g)

    clean = greedy_decode(model, item_toks, max_new, batch_size=batch_size)
    clean_acc = float(np.mean([decode_tokens(model, g) == normalize(e.answer) for g, e in zip(clean, items)]))

    rng = random.Random(seed)
    show = sorted(rng.sample(range(len(trials)), min(n_show, len(trials))))
    shown = [
        {"prompt": items[trials[k][0]].prompt, "entity": items[trials[k][0]].entity, "source": names[trials[k][1]],
         "target": names[trials[k][2]], "source_answer": items[trials[k][0]].answer, "target_answer": trials[k][3],
         "clean": decode_tokens(model, clean[trials[k][0]]), "outputs": {}}  # fmt: skip
        for k in show
    ]
    success = {s: [] for s in SCORERS}
    ci = {s: [] for s in SCORERS}
    pair = {s: [] for s in SCORERS}
    kept, typed = [], []
    pair_counts = torch.zeros(c, c, dtype=torch.long)
    for _, a, b, _ in trials:
        pair_counts[a, b] += 1
    for alpha in alphas:

        def edit(h, rows, alpha=alpha):
            rows = rows.cpu()
            return ed(h, src[rows], tgt[rows], float(alpha))

        gens = greedy_decode(model, trial_toks, max_new, ed.hook_name, edit, batch_size)
        hits = {s: torch.zeros(c, c) for s in SCORERS}
        n_kept = n_typed = 0
        totals = dict.fromkeys(SCORERS, 0)
        for (i, a, b, gold), g in zip(trials, gens):
            sc = score_generation(model, g, gold, gold_ids[gold])
            for s in SCORERS:
                hits[s][a, b] += sc[s]
                totals[s] += sc[s]
            text = decode_tokens(model, g)
            n_kept += text == normalize(items[i].answer)
            n_typed += text in values.get(names[b], set())
        n = len(trials)
        for s in SCORERS:
            success[s].append(totals[s] / n)
            ci[s].append(wilson(totals[s], n))
            m = hits[s] / pair_counts.clamp_min(1)
            m[pair_counts == 0] = float("nan")
            pair[s].append(m.tolist())
        kept.append(n_kept / n)
        typed.append(n_typed / n)
        for row, k in zip(shown, show):
            row["outputs"][float(alpha)] = decode_tokens(model, gens[k])
    return SwapResults(
        mode=getattr(ed, "mode", type(ed).__name__),
        names=names,
        alphas=[float(a) for a in alphas],
        success=success,
        ci=ci,
        pair=pair,
        kept_source=kept,
        type_target=typed,
        clean_accuracy=clean_acc,
        counts={"n_trials": len(trials), "n_items": len(items), "skipped_same_answer": skipped_same,
                "skipped_missing": skipped_missing, "pair_counts": pair_counts.tolist()},  # fmt: skip
        examples=shown,
    )


# =============================================================================================
# slot interchange (RAVEL-style)
# =============================================================================================


def _slot_mask(aligned, concept: str | Sequence[str] | None) -> Tensor:
    names = list(aligned.cfg.concept_names)
    if concept is None:
        return torch.ones(len(names), dtype=torch.bool)
    wanted = [concept] if isinstance(concept, str) else list(concept)
    mask = torch.zeros(len(names), dtype=torch.bool)
    for w in wanted:
        if w not in names:
            raise KeyError(f"unknown concept {w!r}; known concepts are {names}")
        mask[names.index(w)] = True
    return mask


@torch.no_grad()
def _interchange_generate(model, aligned, base_toks, src_values: Tensor, mask: Tensor, max_new: int,
                          batch_size: int, hook_name: str) -> list[list[int]]:  # fmt: skip
    sae = aligned
    dev = sae.W_dec.device
    nf = sae.cfg.n_free
    m = mask.to(dev)

    def edit(h, rows):
        x = h.to(dev, sae.dtype)
        z = sae.encode(x)
        z_new = z.clone()
        zc = z_new[:, nf:]
        zc[:, m] = src_values[rows.cpu()].to(dev, z.dtype)[:, m]
        return (x + (z_new - z) @ sae.W_dec).to(h.dtype)

    return greedy_decode(model, base_toks, max_new, hook_name, edit, batch_size)


@torch.no_grad()
def patch_slots(
    model,
    aligned,
    base_prompts: Sequence[str],
    source_prompts: Sequence[str],
    concept: str | Sequence[str] | None = None,
    max_new_tokens: int = 4,
    batch_size: int = 64,
    hook_name: str | None = None,
) -> dict[str, Any]:
    """Interchange intervention: copy the concept-slot activations of each source prompt (last token) into the
    matching base prompt (last token, delta edit: the rest of the base residual, error term included, is kept).

    `concept=None` copies every slot (the whole concept code); a name or list of names copies only those slots.
    Returns {"base": clean base answers, "source": clean source answers, "patched": patched base answers,
    "source_slots": [n, c] slot values copied, "base_slots": [n, c] slot values before}.
    """
    from align_lens.activations import gather_activations, tokenize

    if len(base_prompts) != len(source_prompts):
        raise ValueError(f"{len(base_prompts)} base prompts but {len(source_prompts)} source prompts")
    hook = hook_name or aligned.cfg.metadata.hook_name
    src_h = gather_activations(model, list(source_prompts), hook, "last", batch_size)
    base_h = gather_activations(model, list(base_prompts), hook, "last", batch_size)
    dev = aligned.W_dec.device
    zs = aligned.concept_acts(src_h.to(dev, aligned.dtype)).float().cpu()
    zb = aligned.concept_acts(base_h.to(dev, aligned.dtype)).float().cpu()
    base_toks = tokenize(model, list(base_prompts))
    src_toks = tokenize(model, list(source_prompts))
    patched = _interchange_generate(model, aligned, base_toks, zs, _slot_mask(aligned, concept), max_new_tokens,
                                    batch_size, hook)  # fmt: skip
    return {
        "base": [decode_tokens(model, g) for g in greedy_decode(model, base_toks, max_new_tokens, batch_size=batch_size)],
        "source": [decode_tokens(model, g) for g in greedy_decode(model, src_toks, max_new_tokens, batch_size=batch_size)],
        "patched": [decode_tokens(model, g) for g in patched],
        "source_slots": zs.tolist(),
        "base_slots": zb.tolist(),
    }


@torch.no_grad()
def ravel_scores(
    model,
    aligned,
    examples: Ontology | Sequence[Example],
    lookup: Ontology | Sequence[Example] | Mapping | None = None,
    max_items: int | None = 30,
    batch_size: int = 128,
    seed: int = 0,
    hook_name: str | None = None,
) -> dict[str, Any]:
    """RAVEL-style Cause / Isolation for the concept code, on pairs (base: entity p asked about A; source:
    another entity q asked about B), copying all concept slots from source to base:

      Cause      (A ≠ B) the base now gives p's answer for B: the asked-about attribute follows the source
      Isolation  (A = B) the base still gives p's own answer for A: nothing else moves, in particular the source
                 entity does not leak in ("entity_leak" = fraction answering q's value instead)
      disentangle = (Cause + Isolation) / 2

    Trials where p's answers for A and B coincide are skipped. Returns the three scores, entity_leak,
    per-concept {cause, isolation} (by the source concept B) and the trial counts.
    """
    hook = hook_name or aligned.cfg.metadata.hook_name
    names = list(aligned.cfg.concept_names)
    table = answer_lookup(lookup if lookup is not None else examples)
    pool = [e for e in _examples(examples) if e.entity is not None and e.answer is not None and e.concept in names]
    items = _sample_per_concept(pool, names, max_items, seed)
    by_concept = {n: [e for e in pool if e.concept == n] for n in names}
    rng = random.Random(seed + 1)
    trials = []  # (base example, source example, kind, gold, leak answer)
    for e in items:
        for nb in names:
            cands = [s for s in by_concept[nb] if s.entity != e.entity]
            if not cands:
                continue
            s = rng.choice(cands)
            if nb == e.concept:
                trials.append((e, s, "isolation", e.answer, table.get((s.entity, nb))))
            else:
                gold = table.get((e.entity, nb))
                if gold is not None and normalize(gold) != normalize(e.answer):
                    trials.append((e, s, "cause", gold, None))
    if not trials:
        raise ValueError("no interchange trials could be built (need ≥ 2 entities per concept)")
    from align_lens.activations import gather_activations, tokenize

    src_h = gather_activations(model, [t[1].prompt for t in trials], hook, "last", batch_size)
    zs = encode_in_chunks(aligned, src_h, concepts_only=True)
    base_toks = tokenize(model, [t[0].prompt for t in trials])
    max_new = _max_answer_len(model, list(table.values())) + 1
    gens = _interchange_generate(model, aligned, base_toks, zs, _slot_mask(aligned, None), max_new, batch_size, hook)
    res = {n: {"cause": [], "isolation": []} for n in names}
    leak = []
    for (e, s, kind, gold, leak_ans), g in zip(trials, gens):
        text = decode_tokens(model, g)
        res[s.concept][kind].append(text == normalize(gold))
        if kind == "isolation" and leak_ans is not None and normalize(leak_ans) != normalize(gold):
            leak.append(text == normalize(leak_ans))
    cause = [v for r in res.values() for v in r["cause"]]
    iso = [v for r in res.values() for v in r["isolation"]]

    def mean(v):
        return float(np.mean(v)) if v else float("nan")

    return {
        "cause": mean(cause),
        "isolation": mean(iso),
        "disentangle": 0.5 * (mean(cause) + mean(iso)),
        "entity_leak": mean(leak),
        "per_concept": {n: {"cause": mean(r["cause"]), "isolation": mean(r["isolation"])} for n, r in res.items()},
        "n_cause": len(cause),
        "n_isolation": len(iso),
    }


# =============================================================================================
# residual-stream activation patching
# =============================================================================================


@torch.no_grad()
def residual_patching(
    model, clean_tokens: Tensor, corrupted_tokens: Tensor, metric: Callable[[Tensor], Tensor | float]
) -> Tensor:
    """Patch clean resid_pre activations into the corrupted run, one (layer, position) at a time, and return
    metric(patched logits) as a [n_layers, pos] tensor — `transformer_lens.patching.get_act_patch_resid_pre`.

    Runs through `align_lens.activations.act_patch_resid_pre`, the adapter's wrapper of TransformerLens' helper.
    """
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError("clean and corrupted tokens must have the same shape (same positions)")
    from align_lens.activations import act_patch_resid_pre

    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(clean_tokens, names_filter=names)
    return act_patch_resid_pre(model, corrupted_tokens, cache, metric)
