"""TransformerLens and SAELens classes, imported with their deprecation warnings silenced, and `quiet()` for
calls that warn."""

from __future__ import annotations

import warnings
from contextlib import contextmanager

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

__all__ = ["HookedSAETransformer", "HookedTransformer", "HookedTransformerConfig", "quiet"]


@contextmanager
def quiet():
    """Silence TransformerLens 3.9's per-construction deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*TransformerBridge.*")
        yield
