"""PendingTerms: per-step loss terms read back from the device in one transfer, checked for divergence."""

import math

import pytest
import torch

from align_lens.training.pending import PendingTerms
from align_lens.training.replica import Replica


def test_flush_returns_one_record_per_step_in_order_and_empties():
    pending = PendingTerms()
    for step in range(3):
        pending.add(step, {"binding": torch.tensor(float(step)), "total": torch.tensor(10.0 + step)})
    records = pending.flush(Replica().record)
    assert records == [
        {"binding": 0.0, "total": 10.0},
        {"binding": 1.0, "total": 11.0},
        {"binding": 2.0, "total": 12.0},
    ]
    assert pending.flush(Replica().record) == []


def test_flush_names_the_first_non_finite_step():
    pending = PendingTerms()
    pending.add(0, {"total": torch.tensor(1.0)})  # flushed below
    pending.flush(Replica().record)
    for step, value in [(40, 1.0), (41, math.nan), (42, math.inf)]:
        pending.add(step, {"total": torch.tensor(value)})
    with pytest.raises(FloatingPointError, match=r"became nan at step 41; lower AlignConfig.optimiser.lr"):
        pending.flush(Replica().record)
