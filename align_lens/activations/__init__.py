"""Activations: gathered at a hook of a frozen model, in memory."""

from align_lens.activations.gather import check_activations, gather_activations, gather_token_activations

__all__ = ["check_activations", "gather_activations", "gather_token_activations"]
