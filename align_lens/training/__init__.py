"""Stage 1 (`pretrain_sae`, SAELens' trainer) and Stage 2 (`align`), with their losses."""

from align_lens.training.config import AlignConfig, AlignHistory
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align

__all__ = ["AlignConfig", "AlignHistory", "align", "pretrain_sae"]
