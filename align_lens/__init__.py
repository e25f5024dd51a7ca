"""align_lens: concept-aligned sparse autoencoders (AlignSAE) for SAELens and TransformerLens."""

from align_lens.sae import AlignedSAE, AlignedSAEConfig, AlignedTrainingSAE, AlignedTrainingSAEConfig, register
from align_lens.ontology import Concept, Example, Ontology, OntologyError
from align_lens.activations import gather_activations, gather_token_activations, load_model, save_model
from align_lens.align import AlignConfig, AlignHistory, align
from align_lens.pretrain import pretrain_sae

register()

__all__ = [
    "AlignConfig",
    "AlignHistory",
    "align",
    "gather_activations",
    "gather_token_activations",
    "load_model",
    "pretrain_sae",
    "save_model",
    "AlignedSAE",
    "AlignedSAEConfig",
    "AlignedTrainingSAE",
    "AlignedTrainingSAEConfig",
    "Concept",
    "Example",
    "Ontology",
    "OntologyError",
    "register",
]
