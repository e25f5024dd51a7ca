"""The aligned SAE architecture and its conversion to and from plain SAELens SAEs."""

from align_lens.saes.aligned import (
    AlignedSAE,
    AlignedSAEConfig,
    AlignedTrainingSAE,
    AlignedTrainingSAEConfig,
    aligned_from_sae,
    register,
)
from align_lens.saes.plain import aligned_from_plain, export_plain, plain_sae

__all__ = [
    "AlignedSAE",
    "AlignedSAEConfig",
    "AlignedTrainingSAE",
    "AlignedTrainingSAEConfig",
    "aligned_from_plain",
    "aligned_from_sae",
    "export_plain",
    "plain_sae",
    "register",
]
