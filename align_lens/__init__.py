"""align_lens: concept-aligned sparse autoencoders (AlignSAE) for SAELens and TransformerLens.

Pipeline: `Ontology` → `gather_activations` → `pretrain_sae` (Stage 1) → `align` (Stage 2) →
`evaluate(..., EvalConfig(...))` (binding, fidelity, swaps: one result) / `swap_hooks` → `push_to_hub`.
The top level holds the pipeline verbs and the objects a user holds; metrics (`align_lens.evals`), swap trials,
interchange and patching (`align_lens.interventions`), SAELens training classes (`align_lens.saes`) and the
TransformerLens adapter (`align_lens.adapter`) are imported from their subpackages.
Importing the package registers the "aligned" SAE architecture with SAELens, so `SAE.load_from_disk` and
`SAE.from_pretrained` return `AlignedSAE`.
"""

from align_lens.activations import gather_activations, gather_token_activations
from align_lens.adapter import load_transformer, save_transformer
from align_lens.evals.evaluate import EvalConfig, evaluate
from align_lens.hub import load_aligned, push_to_hub
from align_lens.interventions import (
    DirectionEditor,
    LatentEditor,
    PaperSlotEditor,
    SlotEditor,
    SteerSlotEditor,
    evaluate_swaps,
    slot_editor,
    swap_hooks,
)
from align_lens.ontology import Concept, Example, Ontology, OntologyError
from align_lens.saes import AlignedSAE, export_plain
from align_lens.saes.aligned import register as _register_aligned
from align_lens.training import (
    AlignConfig,
    AlignHistory,
    LossWeights,
    OptimiserConfig,
    Runtime,
    Stage1Config,
    align,
    pretrain_sae,
)

_register_aligned()

__all__ = [
    "AlignConfig",
    "AlignHistory",
    "AlignedSAE",
    "Concept",
    "DirectionEditor",
    "EvalConfig",
    "Example",
    "LatentEditor",
    "LossWeights",
    "Ontology",
    "OntologyError",
    "OptimiserConfig",
    "PaperSlotEditor",
    "Runtime",
    "SlotEditor",
    "Stage1Config",
    "SteerSlotEditor",
    "align",
    "evaluate",
    "evaluate_swaps",
    "export_plain",
    "gather_activations",
    "gather_token_activations",
    "load_aligned",
    "load_transformer",
    "pretrain_sae",
    "push_to_hub",
    "save_transformer",
    "slot_editor",
    "swap_hooks",
]
