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
from torch import Tensor

from align_lens.evals.decoding import (
    SCORERS,
    answer_tokens,
    decode_tokens,
    greedy_decode,
    normalize,
    score_generation,
)
from align_lens.evals.fidelity import _examples, _max_answer_len
from align_lens.interventions.editors import as_editor
from align_lens.ontology import Example, Ontology

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
            {
                "alpha": a,
                **{s: self.success[s][i] for s in SCORERS},
                "kept_source": self.kept_source[i],
                "type_target": self.type_target[i],
            }
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
    from align_lens.adapter import tokenize

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
        {
            "prompt": items[trials[k][0]].prompt,
            "entity": items[trials[k][0]].entity,
            "source": names[trials[k][1]],
            "target": names[trials[k][2]],
            "source_answer": items[trials[k][0]].answer,
            "target_answer": trials[k][3],
            "clean": decode_tokens(model, clean[trials[k][0]]),
            "outputs": {},
        }
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
        counts={
            "n_trials": len(trials),
            "n_items": len(items),
            "skipped_same_answer": skipped_same,
            "skipped_missing": skipped_missing,
            "pair_counts": pair_counts.tolist(),
        },
        examples=shown,
    )
