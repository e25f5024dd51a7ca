"""Honest swap protocol: disjoint people, α chosen on validation, misses classified."""

from __future__ import annotations

from types import SimpleNamespace

from align_lens.analysis.baselines import diffmean_directions
from align_lens.analysis.protocol import Candidate, honest_swap, miss_breakdown, of_people, people_split, restrict
from align_lens.interventions.editors import DirectionEditor
from align_lens.interventions.trials import SwapTrial


def test_people_split_is_disjoint_and_seeded(trained):
    ont = trained["ontology"]
    a, b = people_split(ont, 10, 12, seed=0), people_split(ont, 10, 12, seed=0)
    assert a == b and people_split(ont, 10, 12, seed=1) != a
    assert (len(a["val"]), len(a["test"])) == (10, 12)
    assert not (a["val"] & a["test"]) and not (a["train"] & (a["val"] | a["test"]))
    assert {e.entity for e in restrict(ont, a["train"]).examples} == a["train"]
    assert {e.entity for e in of_people(ont, a["test"], "heldout")} == a["test"]


def test_honest_swap_picks_alpha_on_validation(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    split = people_split(ont, 8, 8, seed=0)
    train = restrict(ont, split["train"])
    dm = diffmean_directions(trained["train_acts"], ont.labels("train"), len(ont.names))
    ed = DirectionEditor(dm["means"], ont.names, hook)
    r = honest_swap(
        model,
        [Candidate("diffmean", ed, (0.0, 1.0))],
        of_people(ont, split["val"], "heldout"),
        of_people(ont, split["test"], "heldout"),
        ont,
        val_items=4,
        test_items=4,
    )
    assert train.select("train")
    assert r["alpha"] == 1.0  # α = 0 never swaps, so validation must prefer 1
    assert r["test_exact"] == r["test_by_alpha"][1.0] and r["upper_bound_exact"] >= r["test_exact"]
    lo, hi = r["test_ci"]
    assert lo <= r["test_exact"] <= hi and r["test_trials"] > 0


def test_miss_breakdown_classifies_each_miss():
    lookup = {
        ("e1", "A"): "a1",
        ("e1", "B"): "b1",
        ("e1", "C"): "c1",
        ("e2", "B"): "b2",
        ("e3", "B"): "b3",
    }
    trials = [SwapTrial("p", "e1", "A", "B", "a1", "b1")]
    outs = ["a1", "c1", "b2", "b3", "zzz", "b1"]
    res = SimpleNamespace(
        trials=trials,
        outputs=[{"trial": 0, "alpha": 1.0, "generated": g, "exact": g == "b1"} for g in outs],
    )
    names = {"e1": "Ann Lee", "e2": "Bob Lee", "e3": "Cat Kim"}
    m = miss_breakdown(res, 1.0, lookup, names)
    assert m["n_misses"] == 5
    assert m["kept_source"] == 0.2 and m["own_other_relation"] == 0.2 and m["other"] == 0.2
    assert m["other_person"] == 0.4 and m["other_person_shares_name"] == 0.2  # e2 shares "Lee"
