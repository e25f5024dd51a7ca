"""Interventions with concept slots: editors (with the unit of their strength α), swap trials, swap hooks and
their evaluation, slot interchange, patching."""

from align_lens.evals.decoding import SCORERS
from align_lens.interventions.editors import (
    MODES,
    UNITS,
    DirectionEditor,
    Editor,
    LatentEditor,
    PaperSlotEditor,
    SlotEditor,
    SteerSlotEditor,
    as_editor,
    delta_edit,
    edit_residual,
    slot_editor,
)
from align_lens.interventions.interchange import patch_slots, ravel_scores, residual_patching
from align_lens.interventions.swaps import SwapResults, evaluate_swaps, swap_hooks, wilson
from align_lens.interventions.trials import SwapTrial, answer_lookup, reroute_trials, sample_swap_trials

__all__ = [
    "MODES",
    "SCORERS",
    "UNITS",
    "DirectionEditor",
    "Editor",
    "LatentEditor",
    "PaperSlotEditor",
    "SlotEditor",
    "SteerSlotEditor",
    "SwapResults",
    "SwapTrial",
    "answer_lookup",
    "as_editor",
    "delta_edit",
    "edit_residual",
    "evaluate_swaps",
    "patch_slots",
    "ravel_scores",
    "residual_patching",
    "reroute_trials",
    "sample_swap_trials",
    "slot_editor",
    "swap_hooks",
    "wilson",
]
