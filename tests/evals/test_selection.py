"""(Mode, α) chosen on validation: disjoint people, the validation argmax reported on test, misses classified."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from align_lens.analysis.baselines import diffmean_directions
from align_lens.evals.selection import Candidate, choose_swap, miss_breakdown, of_people, people_split, restrict
from align_lens.interventions.editors import ALPHAS, DirectionEditor
from align_lens.interventions.trials import SwapTrial, sample_swap_trials


def test_people_split_is_disjoint_and_seeded(trained):
    ont = trained["ontology"]
    a, b = people_split(ont, 10, 12, seed=0), people_split(ont, 10, 12, seed=0)
    assert a == b and people_split(ont, 10, 12, seed=1) != a
    assert (len(a["val"]), len(a["test"])) == (10, 12)
    assert not (a["val"] & a["test"]) and not (a["train"] & (a["val"] | a["test"]))
    assert {e.entity for e in restrict(ont, a["train"]).examples} == a["train"]
    assert {e.entity for e in of_people(ont, a["test"], "heldout")} == a["test"]


def test_choose_swap_picks_the_validation_argmax_and_reports_test(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    split = people_split(ont, 8, 8, seed=0)
    assert restrict(ont, split["train"]).select("train")
    dm = diffmean_directions(trained["train_acts"], ont.labels("train"), len(ont.names))
    still = DirectionEditor(torch.zeros_like(dm["means"]), ont.names, hook)  # never moves h: never swaps
    val, test = of_people(ont, split["val"], "heldout"), of_people(ont, split["test"], "heldout")
    r = choose_swap(
        model,
        [Candidate("still", still, (1.0, 2.0)), Candidate("diffmean", DirectionEditor(dm["means"], ont.names, hook))],
        val,
        test,
        ont,
        val_items=4,
        test_items=4,
    )
    assert r["val_by_candidate"]["diffmean"]["alphas"] == list(ALPHAS)  # the default grid
    best = max(
        ((s, label, a) for label, v in r["val_by_candidate"].items() for a, s in zip(v["alphas"], v["exact"])),
        key=lambda x: x[0],
    )
    assert max(r["val_by_candidate"]["still"]["exact"]) == 0.0 and best[0] > 0
    assert (r["val_exact"], r["mode"], r["alpha"]) == best  # the argmax on validation, first on ties
    i = r["test"]["alphas"].index(r["alpha"])
    assert r["test_exact"] == r["test_by_alpha"][r["alpha"]] == r["test"]["success"]["exact"][i]
    assert r["upper_bound_exact"] == max(r["test"]["success"]["exact"]) >= r["test_exact"]
    lo, hi = r["test_ci"]
    assert lo <= r["test_exact"] <= hi and r["test_trials"] == len(r["test"]["trials"]) > 0
    assert {t["entity"] for t in r["test"]["trials"]} <= split["test"]  # reported on test people only
    rows = [o for o in r["test"]["outputs"] if o["alpha"] == r["alpha"]]  # per-trial outputs kept
    assert len(rows) == r["test_trials"] and sum(o["exact"] for o in rows) / len(rows) == r["test_exact"]


def test_people_split_without_a_test_size_gives_the_rest_to_test(trained):
    ont = trained["ontology"]
    split = people_split(ont, 10, seed=0)
    assert len(split["val"]) == 10 and not split["train"]
    assert split["val"] | split["test"] == {e.entity for e in ont.examples}


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


@pytest.mark.slow  # runs the selection twice over every α; the fast suite keeps test_choose_swap_picks_the_validation_argmax_and_reports_test
def test_choose_swap_without_upper_bound_evaluates_only_the_chosen_alpha_on_test(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    split = people_split(ont, 8, 8, seed=0)
    dm = diffmean_directions(trained["train_acts"], ont.labels("train"), len(ont.names))
    val, test = of_people(ont, split["val"], "heldout"), of_people(ont, split["test"], "heldout")
    cand = [Candidate("diffmean", DirectionEditor(dm["means"], ont.names, hook))]
    full = choose_swap(model, cand, val, test, ont, val_items=4, test_items=4)
    lean = choose_swap(model, cand, val, test, ont, val_items=4, test_items=4, upper_bound=False)
    assert lean["test"]["alphas"] == [lean["alpha"]] and len(full["test"]["alphas"]) == len(ALPHAS)
    assert (lean["alpha"], lean["test_exact"], lean["test_trials"]) == (
        full["alpha"],
        full["test_exact"],
        full["test_trials"],
    )
    assert lean["upper_bound_exact"] is None and lean["upper_bound_alpha"] is None


def test_choose_swap_takes_given_trials_as_the_examples_would_draw_them(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    split = people_split(ont, 8, 8, seed=0)
    dm = diffmean_directions(trained["train_acts"], ont.labels("train"), len(ont.names))
    cand = [Candidate("diffmean", DirectionEditor(dm["means"], ont.names, hook), (0.5, 1.0))]
    val, test = of_people(ont, split["val"], "heldout"), of_people(ont, split["test"], "heldout")
    drawn = choose_swap(model, cand, val, test, ont, val_items=2, test_items=2, seed=5)
    val_trials = sample_swap_trials(val, ont.names, ont, max_items=2, seed=5)
    test_trials = sample_swap_trials(test, ont.names, ont, max_items=2, seed=6)
    given = choose_swap(model, cand, val_trials, test_trials, ont, val_items=1, test_items=1, seed=5)
    assert given["val_by_candidate"] == drawn["val_by_candidate"]  # val_items does not cut given trials
    assert given["test"]["trials"] == drawn["test"]["trials"] and given["test_exact"] == drawn["test_exact"]
    assert given["test_trials"] == len(test_trials)
