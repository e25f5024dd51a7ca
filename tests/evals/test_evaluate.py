"""`evaluate`: one result shape with one key vocabulary, concepts matched by name, explicit trials.

The `trained` fixture lives in conftest.py.
"""

from __future__ import annotations

import math

import pytest

from align_lens import EvalConfig, Ontology, OntologyError, evaluate
from align_lens.evals.evaluate import DETAILS, HEADLINE, headline
from align_lens.evals.selection import people_split

SMALL = EvalConfig(alphas=(1.0, 2.0), swap_items=2, task_items=12)
CHOSEN = (
    "swap_exact_chosen",
    "swap_chosen_alpha",
    "swap_chosen_ci_low",
    "swap_chosen_ci_high",
    "swap_exact_validation",
)


def _same(a, b) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


def test_one_key_vocabulary(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    acts = {"train": trained["train_acts"], "heldout": trained["heldout_acts"]}
    r = evaluate(model, al, ont, SMALL, stage1=trained["sae"], acts=acts)
    assert set(r) == set(HEADLINE) | set(DETAILS)
    measured = {k: v for k, v in headline(r).items() if k not in CHOSEN}
    assert all(isinstance(v, (int, float)) and not math.isnan(v) for v in measured.values()), measured
    assert all(math.isnan(r[k]) for k in CHOSEN) and r["swap_choice"] is None  # no validation split asked for
    assert r["binding_heldout"] > 0.9 and r["concepts"] == al.cfg.concept_names
    assert r["swap_best_alpha"] in (1.0, 2.0) and r["swap_trials"] == r["swap"]["counts"]["n_trials"]
    assert r["swap_exact_best"] == max(r["swap"]["success"]["exact"]) and r["swap"]["unit"] == "slot_scale"
    assert r["explained_variance_stage1"] == r["fidelity"]["stage1"]["explained_variance"]
    assert r["task_acc_clean"] > 0.9 and r["fidelity_on"] == "train_prompts"
    # without a Stage-1 SAE, swaps or tasks the keys stay and read NaN (not measured)
    bare = evaluate(model, al, ont, EvalConfig(swaps=False, task_accuracy=False), acts=acts)
    assert set(bare) == set(r) and bare["swap"] is None
    for key in ("explained_variance_stage1", "task_acc_clean", "swap_exact_best", "swap_best_alpha"):
        assert math.isnan(bare[key]), key
    assert bare["binding_heldout"] == r["binding_heldout"]


def test_concepts_matched_by_name_not_order(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    shuffled = Ontology(list(reversed(ont.concepts)), ont.examples)
    assert shuffled.names != al.cfg.concept_names
    a = evaluate(model, al, ont, SMALL)
    b = evaluate(model, al, shuffled, SMALL)
    assert all(_same(a[k], b[k]) for k in HEADLINE), {k: (a[k], b[k]) for k in HEADLINE if not _same(a[k], b[k])}
    assert a["binding"]["heldout"]["confusion"] == b["binding"]["heldout"]["confusion"]
    assert a["swap"]["outputs"] == b["swap"]["outputs"]


def test_concepts_the_sae_lacks_raise(trained):
    records = [
        {"prompt": "Q: x A:", "concept": "BIRTH_DATE", "answer": "a"},
        {"prompt": "Q: y A:", "concept": "SPOUSE", "answer": "b"},
    ]
    other = Ontology.from_records(records)
    with pytest.raises(OntologyError, match="SPOUSE"):
        evaluate(trained["model"], trained["aligned"], other, SMALL)
    with pytest.raises(ValueError, match="best_by"):
        EvalConfig(best_by="nope")


@pytest.mark.slow  # two full evaluations
def test_explicit_trials_give_the_same_swaps(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    cfg = EvalConfig(alphas=(1.0,), swap_items=2, task_accuracy=False, seed=5)
    first = evaluate(model, al, ont, cfg)
    trials = first["swap"]["trials"]
    again = evaluate(model, al, ont, EvalConfig(alphas=(1.0,), swap_trials=trials, task_accuracy=False, seed=9))
    assert again["swap"]["outputs"] == first["swap"]["outputs"]
    assert again["swap_exact_best"] == first["swap_exact_best"]


def test_mode_and_alpha_chosen_on_validation_entities(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    cfg = EvalConfig(
        alphas=(0.0, 2.0), modes=("paper", "delta"), validation_entities=8, swap_items=2, task_accuracy=False
    )
    r = evaluate(model, al, ont, cfg)
    choice = r["swap_choice"]
    people = people_split(ont, 8, None, cfg.seed)
    assert {t["entity"] for t in r["swap"]["trials"]} <= people["test"]
    val = [(s, m, a) for m, v in choice["val_by_candidate"].items() for a, s in zip(v["alphas"], v["exact"])]
    assert (r["swap_exact_validation"], choice["mode"], r["swap_chosen_alpha"]) == max(val, key=lambda x: x[0])
    assert r["swap_chosen_alpha"] == 2.0  # α = 0 never swaps in delta mode; paper mode at 0 or 2 barely
    i = r["swap"]["alphas"].index(r["swap_chosen_alpha"])
    assert r["swap_exact_chosen"] == r["swap"]["success"]["exact"][i] and r["swap"]["mode"] == choice["mode"]
    assert r["swap_chosen_ci_low"] <= r["swap_exact_chosen"] <= r["swap_chosen_ci_high"]
    assert r["swap_exact_best"] >= r["swap_exact_chosen"]  # best α on the test trials: the upper bound
    with pytest.raises(ValueError, match="swap modes"):
        EvalConfig(modes=("nope",), validation_entities=8)
    with pytest.raises(ValueError, match="validation_entities > 0"):
        EvalConfig(modes=("delta", "paper"))
    with pytest.raises(ValueError, match="exclude each other"):
        evaluate(model, al, ont, EvalConfig(validation_entities=8, swap_trials=r["swap"]["trials"]))
