"""Putting an SAE into a model at its hook, after checking it fits (hook exists, widths match)."""

from __future__ import annotations

from contextlib import contextmanager

from align_lens.adapter.hook_points import hook_width, resolve_hook
from align_lens.adapter.quiet import HookedSAETransformer, HookedTransformer


def check_sae_fits(model: HookedTransformer, sae) -> str:
    """The SAE's hook name, after checking the model has that hook and its width is the SAE's d_in."""
    hook = sae.cfg.metadata.hook_name if sae.cfg.metadata else None
    if hook is None:
        raise ValueError("the SAE has no cfg.metadata.hook_name; set it to the hook it was trained at.")
    resolve_hook(model, hook)
    width = hook_width(model, hook)
    if width is not None and sae.cfg.d_in != width:
        raise ValueError(
            f"SAE d_in {sae.cfg.d_in} does not match the model's width {width} at {hook}; "
            "the SAE was trained on a different model or hook."
        )
    return hook


def attach_sae(model: HookedSAETransformer, sae, use_error_term: bool = True) -> None:
    """`model.add_sae` that fails loudly (SAELens only logs) when the SAE's hook is missing."""
    check_sae_fits(model, sae)
    model.add_sae(sae, use_error_term=use_error_term)


@contextmanager
def spliced(model: HookedSAETransformer, sae, use_error_term: bool = False):
    """Splice `sae` into `model` at its hook for the duration of the block (restores what was there)."""
    check_sae_fits(model, sae)
    with model.saes(saes=[sae], use_error_term=use_error_term):
        yield model
    if hasattr(sae, "setup"):
        sae.setup()  # restore the SAE's short hook names
