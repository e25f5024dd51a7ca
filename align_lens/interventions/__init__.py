"""Interventions with concept slots: editors, swap hooks and their evaluation, slot interchange, patching."""

from align_lens.evals.decoding import SCORERS
from align_lens.interventions.editors import DirectionEditor, Editor, LatentEditor, SlotEditor, as_editor, edit_residual
from align_lens.interventions.interchange import patch_slots, ravel_scores, residual_patching
from align_lens.interventions.swaps import (
    SwapResults,
    answer_lookup,
    evaluate_swaps,
    swap_hooks,
    wilson,
)

__all__ = [
    "SCORERS",
    "DirectionEditor",
    "Editor",
    "LatentEditor",
    "SlotEditor",
    "SwapResults",
    "answer_lookup",
    "as_editor",
    "edit_residual",
    "evaluate_swaps",
    "patch_slots",
    "ravel_scores",
    "residual_patching",
    "swap_hooks",
    "wilson",
]
