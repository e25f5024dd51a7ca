"""The learning-rate schedule shared by Stage 2 and the tiny base models: linear warm-up, then cosine decay."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, warmup: int, min_frac: float = 0.1, cosine: bool = True) -> float:
    """Multiplier of the base learning rate at `step` (0-based).

    Linear warm-up over the first `warmup` steps ((step + 1) / warmup), then a cosine from 1 down to `min_frac`
    at `total` steps (held at `min_frac` after), or 1 throughout when `cosine=False`.
    """
    if step < warmup:
        return (step + 1) / warmup
    if not cosine:
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_frac + (1 - min_frac) * 0.5 * (1 + math.cos(math.pi * progress))
