"""Top-5 binding: the true slot among the five largest concept activations; silent rows and ties miss."""

from __future__ import annotations

import pytest
import torch

from align_lens import evals

NAMES = [f"c{i}" for i in range(7)]


def test_top5_counts_the_true_slot_among_the_five_largest():
    acts = torch.tensor(
        [
            [7.0, 6, 5, 4, 3, 2, 1],  # label 4: fifth largest, a top-5 hit (a top-1 miss)
            [7.0, 6, 5, 4, 3, 2, 1],  # label 5: sixth largest, a miss
            [0.0, 9, 0, 0, 0, 0, 0],  # label 1: top-1 and top-5 hit
            [0.0, 0, 0, 0, 0, 0, 0],  # label 0: silent, a miss although every column ties for the top
            [0.0, 0, 0, 0, 0, 0, 2],  # label 2: its slot is 0, tied with five others: a miss
        ]
    )
    m = evals.binding_metrics(acts, torch.tensor([4, 5, 1, 0, 2]), NAMES)
    assert m["accuracy"] == pytest.approx(0.2)
    assert m["top5_accuracy"] == pytest.approx(0.4)


def test_top5_with_fewer_than_five_columns_is_any_fired_row():
    acts = torch.tensor([[1.0, 2.0], [0.0, 0.0], [3.0, 1.0]])
    m = evals.binding_metrics(acts, torch.tensor([0, 1, 1]), ["x", "y"])
    assert m["accuracy"] == 0.0 and m["top5_accuracy"] == pytest.approx(2 / 3)
