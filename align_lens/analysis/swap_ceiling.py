"""How far can a single-position edit at one hook go? Full last-token interchange as a swap ceiling.

For a base prompt asking relation A about entity e, take a source prompt asking relation B with the same frame
(template index) about `source_entity` ("same": e itself, "other": another person), replace the base's whole
residual at `hook`, last prompt token, by the source's, and decode. With the same person, success < 1 means the
relation is also read from earlier tokens (the cue word), so no edit of the last token alone can swap every
trial; with another person, answering e's B value means the entity is not read from the last token at this hook,
answering the other person's value means it is.
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

from align_lens.activations.gather import gather_activations
from align_lens.evals.decoding import decode_tokens, greedy_decode, max_answer_len, normalize
from align_lens.interventions.swaps import edit_hooks
from align_lens.ontology import Example


@torch.no_grad()
def interchange_ceiling(
    model,
    examples: Sequence[Example],
    hook: str,
    source_entity: str = "same",
    max_trials: int | None = 600,
    seed: int = 0,
    batch_size: int = 128,
) -> dict[str, float]:
    """Rates over trials (base A → source B, same template index): `gold` (answer = e's B value),
    `source_person` (the source person's B value, only for "other"), `kept` (e's A value), and `n`."""
    if source_entity not in ("same", "other"):
        raise ValueError(f"source_entity must be 'same' or 'other', got {source_entity!r}")
    by_key = {(e.entity, e.concept, e.template.split("/")[1]): e for e in examples if e.template and e.entity}
    entities = sorted({k[0] for k in by_key})
    concepts = sorted({k[1] for k in by_key})
    rng = random.Random(seed)
    trials = []
    for (ent, a, idx), base in by_key.items():
        for b in concepts:
            who = ent if source_entity == "same" else rng.choice([x for x in entities if x != ent])
            src = by_key.get((who, b, idx))
            gold = by_key.get((ent, b, idx))
            if b == a or src is None or gold is None or gold.answer is None or base.answer is None:
                continue
            if normalize(gold.answer) == normalize(base.answer):
                continue
            trials.append((base, src, gold.answer))
    rng.shuffle(trials)
    trials = trials[:max_trials] if max_trials else trials
    if not trials:
        raise ValueError("no trials: the examples need entities, templates and at least two concepts")
    src_acts = gather_activations(model, [s.prompt for _, s, _ in trials], hook)

    def hooks(rows: Tensor, last: Tensor) -> list:
        return edit_hooks(hook, lambda h: src_acts[rows].to(h.device, h.dtype), last, prefill_only=False)

    max_new = max_answer_len(model, [g for *_, g in trials]) + 1
    gens = greedy_decode(model, [b.prompt for b, _, _ in trials], max_new, batch_size, hooks)
    texts = [decode_tokens(model, g) for g in gens]
    n = len(trials)
    return {
        "gold": sum(t == normalize(g) for t, (_, _, g) in zip(texts, trials)) / n,
        "source_person": sum(t == normalize(s.answer) for t, (_, s, _) in zip(texts, trials)) / n,
        "kept": sum(t == normalize(b.answer) for t, (b, _, _) in zip(texts, trials)) / n,
        "n": n,
    }


def interaction_fraction(
    acts: Float[Tensor, "n d"], entities: Sequence[str], concepts: Sequence[str]
) -> dict[str, float]:
    """How additive are entity and concept in `acts`? Averages the rows of each (entity, concept) cell, fits the
    two-way additive model cell ≈ grand mean + entity effect + concept effect on the complete cells (entities that
    have every concept), and returns the fractions of the cells' variance in the concept effects (`concept`), the
    entity effects (`entity`) and the rest (`interaction`). A single edit vector per concept pair can move one
    concept onto another exactly only where `interaction` is small."""
    if not len(acts) == len(entities) == len(concepts):
        raise ValueError(f"{len(acts)} activations for {len(entities)} entities and {len(concepts)} concepts")
    ents, cons = sorted(set(entities)), sorted(set(concepts))
    ei = torch.tensor([ents.index(e) for e in entities])
    ci = torch.tensor([cons.index(c) for c in concepts])
    x = acts.double()
    sums = torch.zeros(len(ents), len(cons), x.shape[1], dtype=x.dtype).index_put_((ei, ci), x, accumulate=True)
    counts = torch.zeros(len(ents), len(cons), dtype=x.dtype).index_put_(
        (ei, ci), torch.ones(len(x), dtype=x.dtype), accumulate=True
    )
    full = (counts > 0).all(1)
    if full.sum() < 2:
        raise ValueError("fewer than two entities have every concept: no cells to fit")
    cells = sums[full] / counts[full].unsqueeze(-1)  # [e, c, d]
    grand = cells.mean((0, 1))
    ent = cells.mean(1, keepdim=True) - grand
    con = cells.mean(0, keepdim=True) - grand
    rest = cells - grand - ent - con
    total = (cells - grand).pow(2).sum()
    e_ss = ent.pow(2).sum() * cells.shape[1]
    c_ss = con.pow(2).sum() * cells.shape[0]
    return {
        "concept": float(c_ss / total),
        "entity": float(e_ss / total),
        "interaction": float(rest.pow(2).sum() / total),
        "n_entities": int(full.sum()),
    }
