"""align_lens: concept-aligned sparse autoencoders (AlignSAE) for SAELens and TransformerLens."""

from align_lens.sae import AlignedSAE, AlignedSAEConfig, AlignedTrainingSAE, AlignedTrainingSAEConfig, register
from align_lens.ontology import Concept, Example, Ontology, OntologyError

register()

__all__ = [
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
