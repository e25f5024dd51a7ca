"""(Mode, α) chosen on validation, success reported on test: the one place a swap strength is chosen.

`choose_swap` takes candidate editors (each with its α grid), picks the (candidate, α) with the highest exact
swap success on the validation examples, and reports exact success on the test examples at that choice, with its
Wilson 95 % interval and the per-trial outputs. The best α on the test trials themselves is kept beside it,
labelled as an upper bound (it is selected on the data it reports). `evaluate(EvalConfig(validation_entities=n))`,
the one-hop protocol (benchmarks/swap_protocol.py: entities split three ways by `people_split`, Stage 2 on the
train people) and the two-hop swaps at each step all call it.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from align_lens.evals.decoding import normalize
from align_lens.interventions.editors import ALPHAS, Editor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.interventions.trials import SwapTrial, answer_lookup
from align_lens.ontology import Example, Ontology


def people_split(ontology: Ontology, n_val: int, n_test: int | None = None, seed: int = 0) -> dict[str, set[str]]:
    """Disjoint entity sets {"train", "val", "test"}: a seeded shuffle of the ontology's entities (sorted first, so
    the split does not depend on example order); val and test take `n_val` and `n_test`, train the rest (with
    `n_test=None` test takes all the rest and train is empty)."""
    people = sorted({e.entity for e in ontology.examples if e.entity is not None})
    if n_test is None:
        if n_val >= len(people):
            raise ValueError(f"{len(people)} entities cannot give {n_val} validation and leave some to test")
        n_test = len(people) - n_val
    elif n_val + n_test >= len(people):
        raise ValueError(
            f"{len(people)} entities cannot give {n_val} validation + {n_test} test and leave some to train"
        )
    random.Random(seed).shuffle(people)
    return {
        "val": set(people[:n_val]),
        "test": set(people[n_val : n_val + n_test]),
        "train": set(people[n_val + n_test :]),
    }


def of_people(ontology: Ontology, people: set[str], split: str | None = None) -> list[Example]:
    """The examples of `people` (in `split` when given), in ontology order."""
    return [e for e in ontology.select(split) if e.entity in people]


def restrict(ontology: Ontology, people: set[str]) -> Ontology:
    """The ontology with only `people`'s examples (every split)."""
    return Ontology(ontology.concepts, [e for e in ontology.examples if e.entity in people])


@dataclass
class Candidate:
    """One way a method can swap: an editor and the α grid (in the editor's unit) to choose from."""

    label: str  # e.g. "delta", "paper"
    editor: Editor
    alphas: Sequence[float] = ALPHAS
    span: bool = False  # edit the generated positions too (`swap_hooks(span=True)`)
    start: int | None = None  # with span: edit from this absolute position on (`evaluate_swaps(start=)`)


def choose_swap(
    model,
    candidates: Sequence[Candidate],
    val_examples: Sequence[Example] | Sequence[SwapTrial],
    test_examples: Sequence[Example] | Sequence[SwapTrial],
    lookup,
    val_items: int | None = 40,
    test_items: int | None = None,
    batch_size: int = 128,
    seed: int = 0,
    entity_names: dict[str, str] | None = None,
    max_new_tokens: int | None = None,
    upper_bound: bool = True,
) -> dict[str, Any]:
    """Choose (candidate, α) by exact success on `val_examples` (≤ `val_items` base prompts per source concept,
    trials drawn with `seed`), then evaluate that candidate's whole α grid on `test_examples` (≤ `test_items` per
    concept, None: all; trials drawn with `seed + 1`). Ties go to the first candidate, then the first α.
    `upper_bound=False` evaluates only the chosen α on test (a grid's cost less; the upper-bound keys are None).
    Either set may instead be a list of `SwapTrial`s (e.g. from `reroute_trials`, for entity or value swaps),
    evaluated as given: `val_items` / `test_items` do not apply to it.

    Returns {mode, alpha, val_exact, test_exact, test_ci (Wilson 95 %), test_trials, kept_source, type_target (at
    the chosen α), upper_bound_exact / upper_bound_alpha (best α of the chosen mode on the test trials: optimistic),
    val_by_candidate: {label: exact by α}, test_by_alpha: exact by α, misses: `miss_breakdown` at the chosen α,
    test: the test `SwapResults.to_dict()` (trials and per-trial outputs at every α)}.
    """
    if not candidates:
        raise ValueError("give at least one Candidate")
    val = {}
    best = (-1.0, None, None)
    val_ex, val_trials = _examples_or_trials(val_examples)
    test_ex, test_trials = _examples_or_trials(test_examples)
    for cand in candidates:
        res = evaluate_swaps(
            model,
            cand.editor,
            val_ex,
            cand.alphas,
            trials=val_trials,
            max_items=val_items,
            lookup=lookup,
            seed=seed,
            batch_size=batch_size,
            max_new_tokens=max_new_tokens,
            span=cand.span,
            start=cand.start,
        )
        val[cand.label] = {"alphas": res.alphas, "exact": res.success["exact"], "trials": res.counts["n_trials"]}
        for a, s in zip(res.alphas, res.success["exact"]):
            if s > best[0]:
                best = (s, cand, a)
    val_exact, chosen, alpha = best
    if chosen is None or alpha is None:
        raise ValueError("no candidate editor produced a swap success rate on the validation examples")
    res = evaluate_swaps(
        model,
        chosen.editor,
        test_ex,
        chosen.alphas if upper_bound else (alpha,),
        trials=test_trials,
        max_items=test_items,
        lookup=lookup,
        seed=seed + 1,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        span=chosen.span,
        start=chosen.start,
    )
    i = res.alphas.index(float(alpha))
    ub_alpha, ub = res.best("exact") if upper_bound else (None, None)
    return {
        "mode": chosen.label,
        "alpha": float(alpha),
        "val_exact": val_exact,
        "test_exact": res.success["exact"][i],
        "test_ci": list(res.ci["exact"][i]),
        "test_trials": res.counts["n_trials"],
        "kept_source": res.kept_source[i],
        "type_target": res.type_target[i],
        "upper_bound_exact": ub,
        "upper_bound_alpha": ub_alpha,
        "val_by_candidate": val,
        "test_by_alpha": dict(zip(res.alphas, res.success["exact"])),
        "misses": miss_breakdown(res, alpha, lookup, entity_names),
        "test": res.to_dict(),
    }


def _examples_or_trials(
    items: Sequence[Example] | Sequence[SwapTrial],
) -> tuple[list[Example] | None, list[SwapTrial] | None]:
    """(examples, trials) for `evaluate_swaps`: a list of SwapTrials goes in as given trials, else as examples."""
    if items and all(isinstance(t, SwapTrial) for t in items):
        return None, [t for t in items if isinstance(t, SwapTrial)]
    return [e for e in items if isinstance(e, Example)], None


def miss_breakdown(res, alpha: float, lookup, entity_names: dict[str, str] | None = None) -> dict[str, float]:
    """What the failed swaps of `res` (a `SwapResults`) at `alpha` answered, as fractions of the misses:
    kept_source (A's answer), own_other_relation (the same person's value of a third relation), other_person
    (another person's value of B; with `entity_names`, `other_person_shares_name` counts those whose owner shares
    the first or last name with the asked person), other (anything else)."""
    table = answer_lookup(lookup)
    owners: dict[tuple[str, str], set[str]] = {}
    for (ent, c), a in table.items():
        owners.setdefault((c, normalize(a)), set()).add(ent)
    counts = dict.fromkeys(
        ("kept_source", "own_other_relation", "other_person", "other_person_shares_name", "other"), 0
    )
    n = 0
    for row in res.outputs:
        if row["alpha"] != float(alpha) or row["exact"]:
            continue
        n += 1
        t = res.trials[row["trial"]]
        text = row["generated"]
        own = {normalize(a) for (ent, c), a in table.items() if ent == t.entity and c not in (t.source, t.target)}
        who = owners.get((t.target, text), set()) - {t.entity}
        if text == normalize(t.source_answer):
            counts["kept_source"] += 1
        elif text in own:
            counts["own_other_relation"] += 1
        elif who:
            counts["other_person"] += 1
            if entity_names is not None:
                mine = set(entity_names[t.entity].split())
                counts["other_person_shares_name"] += any(mine & set(entity_names[w].split()) for w in who)
        else:
            counts["other"] += 1
    return {k: v / n for k, v in counts.items()} | {"n_misses": n} if n else {"n_misses": 0}
