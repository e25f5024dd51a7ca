"""Hook names (lookup with close-match errors, residual hooks, where an edit attaches) and running with hooks."""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Sequence
from contextlib import nullcontext

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens.utilities.activation_functions import apply_softcap

from align_lens.adapter.quiet import HookedTransformer


def resolve_hook(model: HookedTransformer, hook_name: str) -> str:
    """Return `hook_name` if the model has it (or SAELens has an SAE attached there); otherwise raise, listing
    the closest valid names."""
    names = list(model.hook_dict)
    if hook_name in model.hook_dict or f"{hook_name}.hook_sae_input" in model.hook_dict:
        return hook_name
    close = difflib.get_close_matches(hook_name, names, n=5, cutoff=0.4)
    raise KeyError(
        f"hook {hook_name!r} is not in the model. Closest valid names: {close}. "
        f"Residual hooks look like 'blocks.0.hook_resid_post'."
    )


def read_site(model: HookedTransformer, hook_name: str) -> str:
    """The hook point whose value is the residual at `hook_name`: the hook itself, or `<hook>.hook_sae_input` when
    SAELens' HookedSAETransformer has an SAE attached there (`model.add_sae` replaces the hook point)."""
    resolve_hook(model, hook_name)
    return hook_name if hook_name in model.hook_dict else f"{hook_name}.hook_sae_input"


def residual_hooks(model: HookedTransformer, mid: bool = False) -> list[str]:
    """All residual-stream hooks, in forward order (resid_pre 0, resid_post 0, ..., resid_post L-1); with `mid`,
    each block's `hook_resid_mid` (after attention, before the MLP) before its `hook_resid_post`."""
    n = model.cfg.n_layers
    has_mid = mid and not (model.cfg.attn_only or model.cfg.parallel_attn_mlp)
    per_block = [[f"blocks.{i}.hook_resid_mid"] * has_mid + [f"blocks.{i}.hook_resid_post"] for i in range(n)]
    return ["blocks.0.hook_resid_pre"] + [h for block in per_block for h in block]


def stop_layer(hook_name: str) -> int | None:
    """First block that need not run to compute `hook_name` (None: run the whole model)."""
    m = re.match(r"blocks\.(\d+)\.", hook_name)
    if m:
        return int(m.group(1)) + 1
    if hook_name in ("hook_embed", "hook_pos_embed", "hook_tokens"):
        return 0
    return None


def hook_width(model: HookedTransformer, hook_name: str) -> int | None:
    """d_model for residual-stream-shaped hooks; None where the width depends on the hook kind."""
    if re.search(r"hook_(resid_(pre|mid|post)|attn_out|mlp_out)$", hook_name):
        return model.cfg.d_model
    return None


def sae_hook_name(model: HookedTransformer, sae, internal: str = "hook_sae_acts_post") -> str:
    """Name of an attached SAE's internal hook, e.g. 'blocks.1.hook_resid_post.hook_sae_acts_post'."""
    get_name = getattr(model, "get_sae_hook_name", None)  # HookedSAETransformer only
    if get_name is not None:
        return get_name(sae, internal=internal)
    return f"{sae.cfg.metadata.hook_name}.{internal}"


class EditSite:
    """Where an edit of the residual at `hook_name` attaches, as a TransformerLens hook-name filter: the hook point
    itself, or, when SAELens' HookedSAETransformer has an SAE attached there (`model.add_sae`), that SAE's
    `hook_sae_output` (the value that flows on). Works wherever TransformerLens takes a hook name."""

    def __init__(self, hook_name: str):
        self.hook_name = hook_name

    def __call__(self, name: str) -> bool:
        return name == self.hook_name or name == f"{self.hook_name}.hook_sae_output"

    def __str__(self) -> str:
        return self.hook_name

    def __repr__(self) -> str:
        return f"EditSite({self.hook_name!r})"


HookName = str | EditSite | Callable[[str], bool]


def hooks(model: HookedTransformer, fwd_hooks: Sequence[tuple[HookName, Callable]]):
    """Context manager that adds `fwd_hooks` for the duration of the block (nothing when empty)."""
    return model.hooks(fwd_hooks=list(fwd_hooks)) if fwd_hooks else nullcontext(model)


def run_with_hooks(model: HookedTransformer, tokens: Tensor, fwd_hooks: Sequence[tuple[HookName, Callable]]) -> Tensor:
    """Logits of one forward pass with `fwd_hooks` added."""
    return model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))


def logits_at(
    model: HookedTransformer, tokens: Int[Tensor, "b seq"], positions: Int[Tensor, " b"]
) -> Float[Tensor, "b d_vocab"]:
    """`model(tokens)[arange(b), positions]` (under the hooks already added), unembedding only those positions:
    on GPT-2's 50,257-token vocabulary the unembedding of every position dominates a short forward pass.
    Hooks on `ln_final` and `unembed` see those positions only ([b, 1, d])."""
    resid = model(tokens, stop_at_layer=model.cfg.n_layers)  # every block, under the hooks; no unembedding
    x = resid[torch.arange(resid.shape[0], device=resid.device), positions.to(resid.device)][:, None]
    if model.cfg.normalization_type:
        x = model.ln_final(x)  # per position, so taking the positions first changes nothing
    return apply_softcap(model.unembed(x), model.cfg.output_logits_soft_cap)[:, 0]


def run_with_cache(model: HookedTransformer, tokens: Tensor, names: Sequence[str]):
    """(logits, activation cache of the hooks in `names`)."""
    return model.run_with_cache(tokens, names_filter=list(names))
