"""Activations: gathered at a hook of a frozen model, in memory or into an on-disk store."""

from align_lens.activations.gather import check_activations, gather_activations, gather_token_activations
from align_lens.activations.store import ActivationStore, write_ontology_store, write_store, write_tensor_store

__all__ = [
    "ActivationStore",
    "check_activations",
    "gather_activations",
    "gather_token_activations",
    "write_ontology_store",
    "write_store",
    "write_tensor_store",
]
