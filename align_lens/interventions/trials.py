"""Swap trials: which prompt is edited from which concept to which, and the answer that counts as success.

`sample_swap_trials` draws them reproducibly (same arguments and seed → the same trials, in the same order), so
an experiment can be rerun on exactly the same trials or on a list saved with its results.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from align_lens.evals.decoding import normalize
from align_lens.ontology import Example, Ontology, as_examples


@dataclass(frozen=True)
class SwapTrial:
    """Ask `prompt` (about `entity`, concept `source`, clean answer `source_answer`), edit `source` → `target`
    at its last token (or `offset` ≤ 0 tokens before it, e.g. at a name inside the question), and count the swap
    a success when the model answers `gold` (the entity's target answer)."""

    prompt: str
    entity: str
    source: str
    target: str
    source_answer: str
    gold: str
    offset: int = 0


def answer_lookup(source: Ontology | Sequence[Example] | Mapping) -> dict[tuple[str, str], str]:
    """(entity, concept) → answer, from every example that has both (the ontology holds every relation of
    every entity, over all its splits)."""
    if isinstance(source, Mapping):
        return dict(source)
    out: dict[tuple[str, str], str] = {}
    for e in as_examples(source):
        if e.entity is not None and e.answer is not None:
            out.setdefault((e.entity, e.concept), e.answer)
    return out


def answerable(examples: Ontology | Sequence[Example], names: Sequence[str]) -> list[Example]:
    """Examples with an entity and an answer whose concept is one of `names`."""
    return [e for e in as_examples(examples) if e.entity is not None and e.answer is not None and e.concept in names]


def sample_per_concept(items: list[Example], names: Sequence[str], max_items: int | None, seed: int) -> list[Example]:
    """At most `max_items` examples per concept (a seeded sample, concepts in `names` order); None keeps all."""
    if max_items is None:
        return items
    rng = random.Random(seed)
    out = []
    for n in names:
        group = [e for e in items if e.concept == n]
        out += rng.sample(group, min(max_items, len(group)))
    return out


def build_trials(
    examples: Ontology | Sequence[Example],
    names: Sequence[str],
    lookup: Ontology | Sequence[Example] | Mapping | None = None,
    max_items: int | None = None,
    seed: int = 0,
) -> tuple[list[SwapTrial], dict[str, int]]:
    """(trials, counts) for `sample_swap_trials`; counts = {n_items, skipped_same_answer, skipped_missing}."""
    names = list(names)
    table = answer_lookup(lookup if lookup is not None else examples)
    pool = answerable(examples, names)
    if not pool:
        raise ValueError("no base examples with entity, answer and a known concept")
    items = sample_per_concept(pool, names, max_items, seed)
    trials, same, missing = [], 0, 0
    for e in items:
        assert e.entity is not None and e.answer is not None  # answerable() keeps only these
        for target in names:
            if target == e.concept:
                continue
            gold = table.get((e.entity, target))
            if gold is None:
                missing += 1
            elif normalize(gold) == normalize(e.answer):
                same += 1
            else:
                trials.append(SwapTrial(e.prompt, e.entity, e.concept, target, e.answer, gold))
    if not trials:
        raise ValueError("no swap trials: every target answer was missing or equal to the source answer")
    return trials, {"n_items": len(items), "skipped_same_answer": same, "skipped_missing": missing}


def sample_swap_trials(
    examples: Ontology | Sequence[Example],
    names: Sequence[str],
    lookup: Ontology | Sequence[Example] | Mapping | None = None,
    max_items: int | None = None,
    seed: int = 0,
) -> list[SwapTrial]:
    """Every ordered swap (A → B, A ≠ B, both in `names`) on base prompts drawn from `examples`.

    At most `max_items` base prompts per source concept (seeded sample; None: all). `lookup` gives
    (entity, concept) → answer (default: built from `examples`; pass the full ontology when `examples` is a
    subset). Pairs where B's answer is unknown or equals A's are left out. Same arguments → same list.
    """
    return build_trials(examples, names, lookup, max_items, seed)[0]


def reroute_trials(
    examples: Sequence[Example],
    targets: Mapping[str, Sequence[str]],
    gold: Callable[[Example, str], str | None],
    per_item: int,
    seed: int = 0,
    offset: Callable[[Example], int] | None = None,
) -> list[SwapTrial]:
    """Swap trials for concepts that are not relations: each base example (with entity and answer) of concept A
    is swapped to at most `per_item` targets B drawn (seeded) from `targets[A]`, and succeeds when the model
    answers `gold(example, B)` (e.g. for a person concept, B's answer to the same question; for a value concept,
    B itself). Targets whose gold is None or equal to the example's answer are passed over. Same arguments → same
    list, in example order. `offset(example)` (≤ 0) moves the edit back from the last prompt token
    (`SwapTrial.offset`).
    """
    if per_item < 1:
        raise ValueError(f"per_item must be ≥ 1, got {per_item}")
    rng = random.Random(seed)
    trials = []
    for e in examples:
        if e.entity is None or e.answer is None or e.concept not in targets:
            continue
        pool = [b for b in targets[e.concept] if b != e.concept]
        rng.shuffle(pool)
        kept = 0
        for b in pool:
            g = gold(e, b)
            if g is None or normalize(g) == normalize(e.answer):
                continue
            trials.append(SwapTrial(e.prompt, e.entity, e.concept, b, e.answer, g, offset(e) if offset else 0))
            kept += 1
            if kept == per_item:
                break
    if not trials:
        raise ValueError("no swap trials: no example had a target with a known, different answer")
    return trials
