import math

import pytest

from align_lens.training.schedule import warmup_cosine


def test_warmup_then_cosine_to_the_floor():
    assert warmup_cosine(0, 100, 10) == pytest.approx(0.1) and warmup_cosine(9, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(10, 100, 10) == pytest.approx(1.0)
    assert warmup_cosine(55, 100, 10) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))
    assert warmup_cosine(100, 100, 10) == pytest.approx(0.1) and warmup_cosine(500, 100, 10) == pytest.approx(0.1)
    assert warmup_cosine(100, 100, 10, min_frac=0.0) == pytest.approx(0.0)
    assert warmup_cosine(80, 100, 10, cosine=False) == 1.0 and warmup_cosine(4, 100, 10, cosine=False) == 0.5
