"""Slot interchange between prompts (RAVEL-style) and residual-stream activation patching."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from align_lens.activations.gather import gather_activations
from align_lens.adapter import quiet, run_with_cache, tokenize
from align_lens.evals.binding import encode_in_chunks
from align_lens.evals.decoding import decode_tokens, greedy_decode, max_answer_len, normalize
from align_lens.interventions.editors import delta_edit
from align_lens.interventions.swaps import edit_hooks
from align_lens.interventions.trials import answer_lookup, answerable, sample_per_concept
from align_lens.ontology import Example, Ontology, index_of

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
        mask[index_of(names, w)] = True
    return mask


@torch.no_grad()
def _interchange_generate(
    model, aligned, base_toks, src_values: Tensor, mask: Tensor, max_new: int, batch_size: int, hook_name: str
) -> list[list[int]]:
    nf = aligned.cfg.n_free

    def hooks(rows: Tensor, last: Tensor) -> list:
        def copied(z):
            out = z.clone()
            out[:, nf:][:, mask.to(z.device)] = src_values[rows].to(z.device, z.dtype)[:, mask]
            return out

        return edit_hooks(hook_name, lambda h: delta_edit(aligned, h, copied), last, prefill_only=False)

    return greedy_decode(model, base_toks, max_new, batch_size, hooks)


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
    patched = _interchange_generate(
        model, aligned, base_toks, zs, _slot_mask(aligned, concept), max_new_tokens, batch_size, hook
    )
    return {
        "base": [
            decode_tokens(model, g) for g in greedy_decode(model, base_toks, max_new_tokens, batch_size=batch_size)
        ],
        "source": [
            decode_tokens(model, g) for g in greedy_decode(model, src_toks, max_new_tokens, batch_size=batch_size)
        ],
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
    pool = answerable(examples, names)
    items = sample_per_concept(pool, names, max_items, seed)
    by_concept = {n: [e for e in pool if e.concept == n] for n in names}
    rng = random.Random(seed + 1)
    trials = []  # (base example, source example, kind, gold, leak answer)
    for e in items:
        assert e.entity is not None and e.answer is not None  # answerable() keeps only these
        for nb in names:
            cands = [s for s in by_concept[nb] if s.entity != e.entity]
            if not cands:
                continue
            s = rng.choice(cands)
            if nb == e.concept:
                trials.append((e, s, "isolation", e.answer, table.get((str(s.entity), nb))))
            else:
                gold = table.get((e.entity, nb))
                if gold is not None and normalize(gold) != normalize(e.answer):
                    trials.append((e, s, "cause", gold, None))
    if not trials:
        raise ValueError("no interchange trials could be built (need ≥ 2 entities per concept)")
    src_h = gather_activations(model, [t[1].prompt for t in trials], hook, "last", batch_size)
    zs = encode_in_chunks(aligned, src_h, concepts_only=True)
    base_toks = tokenize(model, [t[0].prompt for t in trials])
    max_new = max_answer_len(model, list(table.values())) + 1
    gens = _interchange_generate(model, aligned, base_toks, zs, _slot_mask(aligned, None), max_new, batch_size, hook)
    res = {n: {"cause": [], "isolation": []} for n in names}
    leak = []
    for (_e, s, kind, gold, leak_ans), g in zip(trials, gens):
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
    model, clean_tokens: Tensor, corrupted_tokens: Tensor, metric: Callable[[Tensor], Tensor]
) -> Tensor:
    """Patch clean resid_pre activations into the corrupted run, one (layer, position) at a time, and return
    metric(patched logits) (a 0-d tensor) as a [n_layers, pos] tensor —
    `transformer_lens.patching.get_act_patch_resid_pre`."""
    if clean_tokens.shape != corrupted_tokens.shape:
        raise ValueError("clean and corrupted tokens must have the same shape (same positions)")
    names = [f"blocks.{layer}.hook_resid_pre" for layer in range(model.cfg.n_layers)]
    _, cache = run_with_cache(model, clean_tokens, names)
    with quiet():
        from transformer_lens import patching

        return patching.get_act_patch_resid_pre(model, corrupted_tokens, cache, metric)
