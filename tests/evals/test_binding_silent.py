"""A prompt where no slot fires is a miss, never a vote for the first concept."""

from __future__ import annotations

import pytest
import torch

from align_lens import evals


def test_silent_rows_are_misses_and_counted():
    labels = torch.tensor([0, 0, 1, 1])
    acts = torch.tensor([[2.0, 0], [0, 0], [0, 1], [0, 0]])  # rows 1 and 3 are silent
    m = evals.binding_metrics(acts, labels, ["x", "y"])
    assert m["accuracy"] == 0.5  # the old argmax of a zero row voted for "x", giving 0.75
    assert m["hungarian_accuracy"] == 0.5
    assert m["n_silent"] == 2 and m["silent_fraction"] == 0.5
    assert m["confusion"] == [[1, 0], [0, 1]]
    assert m["confusion_normalized"] == [[0.5, 0.0], [0.0, 0.5]]
    assert m["per_concept"]["x"]["accuracy"] == 0.5


def test_negative_logits_are_not_silent():
    labels = torch.tensor([0, 1])
    m = evals.binding_metrics(torch.tensor([[-1.0, -2.0], [-3.0, -0.5]]), labels, ["x", "y"])
    assert m["accuracy"] == 1.0 and m["n_silent"] == 0
    assert m["diagonal"] == pytest.approx(1.0)
