"""Stage 1 (`pretrain_sae`, SAELens' trainer) and Stage 2 (`align`, `Stage2Trainer`), their configs and losses."""

from align_lens.training.config import (
    AlignConfig,
    LossWeights,
    OptimiserConfig,
    Runtime,
    Stage1Config,
    config_from_dict,
    with_values,
)
from align_lens.training.history import AlignHistory
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import Stage2Trainer, align

__all__ = [
    "AlignConfig",
    "AlignHistory",
    "LossWeights",
    "OptimiserConfig",
    "Runtime",
    "Stage1Config",
    "Stage2Trainer",
    "align",
    "config_from_dict",
    "pretrain_sae",
    "with_values",
]
