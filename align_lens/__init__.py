"""align_lens: concept-aligned sparse autoencoders (AlignSAE) for SAELens and TransformerLens.

Pipeline: `Ontology` → `gather_activations` → `pretrain_sae` (Stage 1) → `align` (Stage 2) →
`evaluate(..., EvalConfig(...))` (binding, fidelity, swaps: one result) / `swap_hooks` → `push_to_hub`.
Importing the package registers the "aligned" SAE architecture with SAELens, so `SAE.load_from_disk` and
`SAE.from_pretrained` return `AlignedSAE`.
"""

from align_lens.activations import gather_activations, gather_token_activations
from align_lens.adapter import load_model, save_model
from align_lens.evals import binding_metrics, fidelity, fragmentation, off_ontology_silence, task_accuracy
from align_lens.evals.evaluate import EvalConfig, evaluate
from align_lens.hub import load_aligned, push_to_hub
from align_lens.interventions import (
    SwapTrial,
    evaluate_swaps,
    patch_slots,
    ravel_scores,
    sample_swap_trials,
    swap_hooks,
)
from align_lens.ontology import Concept, Example, Ontology, OntologyError
from align_lens.saes import (
    AlignedSAE,
    AlignedSAEConfig,
    AlignedTrainingSAE,
    AlignedTrainingSAEConfig,
    export_plain,
    register,
)
from align_lens.training import AlignConfig, AlignHistory, align, pretrain_sae

register()

__all__ = [
    "AlignConfig",
    "AlignHistory",
    "AlignedSAE",
    "AlignedSAEConfig",
    "AlignedTrainingSAE",
    "AlignedTrainingSAEConfig",
    "Concept",
    "EvalConfig",
    "Example",
    "Ontology",
    "OntologyError",
    "SwapTrial",
    "align",
    "binding_metrics",
    "evaluate",
    "evaluate_swaps",
    "export_plain",
    "fidelity",
    "fragmentation",
    "gather_activations",
    "gather_token_activations",
    "load_aligned",
    "load_model",
    "off_ontology_silence",
    "patch_slots",
    "pretrain_sae",
    "push_to_hub",
    "ravel_scores",
    "register",
    "sample_swap_trials",
    "save_model",
    "swap_hooks",
    "task_accuracy",
]
