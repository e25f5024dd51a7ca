"""Binding and fragmentation on hand-built cases with known answers."""

from __future__ import annotations

import math

import pytest
import torch

from align_lens import evals

NAMES = ["a", "b", "c"]


# ---- binding ------------------------------------------------------------------------------
def test_binding_perfect():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    acts = torch.nn.functional.one_hot(labels, 3).float() * 2
    m = evals.binding_metrics(acts, labels, NAMES)
    assert m["accuracy"] == 1.0 and m["hungarian_accuracy"] == 1.0 and m["diagonal"] == 1.0
    assert m["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert m["hungarian_assignment"] == [0, 1, 2]
    assert m["per_concept"]["b"] == {"accuracy": 1.0, "n": 2, "mean_own": 2.0, "margin": 2.0}


def test_binding_permuted_fixed_by_hungarian():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    perm = torch.tensor([2, 0, 1])  # concept i fires column perm[i]
    acts = torch.nn.functional.one_hot(perm[labels], 3).float()
    m = evals.binding_metrics(acts, labels, NAMES)
    assert m["accuracy"] == 0.0
    assert m["hungarian_accuracy"] == 1.0
    assert m["hungarian_assignment"] == perm.tolist()
    assert m["confusion"][2] == [0, 3, 0]  # rows = true concept, cols = argmax column
    assert m["confusion"][0] == [0, 0, 2]


def test_binding_partial_confusion_and_templates():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    acts = torch.tensor([[1, 0.0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 0]])
    m = evals.binding_metrics(acts, labels, ["x", "y"], templates=["t1", "t1", "t2", "t2", "t1", "t2"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["diagonal"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["confusion"] == [[3, 1], [1, 1]]
    assert m["per_template"] == {"t1": 1.0, "t2": pytest.approx(1 / 3)}


def test_binding_more_columns_than_concepts():
    labels = torch.tensor([0, 1, 1])
    acts = torch.zeros(3, 5)
    acts[0, 4] = 1
    acts[1:, 2] = 1
    m = evals.binding_metrics(acts, labels, ["x", "y"])
    assert m["hungarian_assignment"] == [4, 2] and m["hungarian_accuracy"] == 1.0


def test_binding_rejects_bad_input():
    with pytest.raises(ValueError):
        evals.binding_metrics(torch.zeros(3, 1), torch.tensor([0, 1, 1]), ["x", "y"])
    with pytest.raises(ValueError):
        evals.binding_metrics(torch.zeros(3, 2), torch.tensor([0, 1]), ["x", "y"])


# ---- fragmentation ------------------------------------------------------------------------
def test_fragmentation_one_hot_and_uniform():
    labels = torch.tensor([0, 0, 1, 1])
    acts = torch.zeros(4, 6)
    acts[:2, 4] = 3.0  # concept 0: all mass on latent 4 (its slot)
    acts[2:, :4] = 1.0  # concept 1: spread evenly over latents 0..3
    acts[2:, 5] = -2.0  # negative values carry no mass
    f = evals.fragmentation(acts, labels, slot_indices=[4, 5], names=["x", "y"])
    x, y = f["per_concept"]["x"], f["per_concept"]["y"]
    assert x["eff_feat_all"] == pytest.approx(1.0) and x["top1_all"] == pytest.approx(1.0)
    assert x["eff_feat_slots"] == pytest.approx(1.0) and x["top1_slot_is_own"] and x["top1_latent_all"] == 4
    assert y["eff_feat_all"] == pytest.approx(4.0) and y["top1_all"] == pytest.approx(0.25)
    assert math.isnan(y["eff_feat_slots"])  # no positive mass on the slots


def test_many_concepts_skip_the_matrices_but_keep_per_concept_numbers():
    """Above MAX_MATRIX_CONCEPTS the c × k matrices and the matching are None; per-concept numbers are exact."""
    from align_lens.evals.binding import MAX_MATRIX_CONCEPTS

    c = MAX_MATRIX_CONCEPTS + 1
    y = torch.arange(c).repeat(2)
    z = torch.nn.functional.one_hot(y, c).float()
    z[0, 0], z[0, 1] = 0.0, 1.0  # one row of concept 0 read as concept 1
    m = evals.binding_metrics(z, y, [f"c{i}" for i in range(c)])
    assert m["confusion"] is None and m["hungarian_accuracy"] is None and m["mean_activation"] is None
    assert m["accuracy"] == pytest.approx(1 - 1 / (2 * c))
    assert m["per_concept"]["c0"] == {"accuracy": 0.5, "n": 2, "mean_own": 0.5, "margin": 0.0}
    assert m["per_concept"]["c1"]["accuracy"] == 1.0
