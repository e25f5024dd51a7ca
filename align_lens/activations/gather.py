"""Activations at a hook: one position per prompt (labelled sets) or every token (unlabelled corpora)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.adapter import HookedTransformer, Position, pad_right, read_site, stop_layer, tokenize


def _pick(tokens: Tensor, length: int, position: Position) -> int:
    if position == "last":
        return length - 1
    if isinstance(position, int):
        pos = position if position >= 0 else length + position
    elif callable(position):
        pos = int(position(tokens[:length]))
    else:
        raise ValueError(f"position must be 'last', an int or a callable, got {position!r}")
    if not 0 <= pos < length:
        raise IndexError(f"position {position!r} resolves to {pos}, outside a prompt of {length} tokens")
    return pos


@torch.no_grad()
def gather_activations(
    model: HookedTransformer,
    prompts: Sequence[str],
    hook_name: str,
    position: Position = "last",
    batch_size: int = 64,
    progress: bool = False,
) -> Float[Tensor, "n d_in"]:
    """Activations at `hook_name` at one position per prompt ("last" = last real token).

    Batches are right-padded so the padding side of the tokenizer cannot move "last".
    """
    site = read_site(model, hook_name)
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    seqs = tokenize(model, prompts)
    out = []
    stop = stop_layer(hook_name)
    it = range(0, len(seqs), batch_size)
    for start in tqdm(it, desc=f"activations @ {hook_name}", disable=not progress):
        chunk = seqs[start : start + batch_size]
        toks, lengths = pad_right(chunk)
        toks = toks.to(model.cfg.device)
        _, cache = model.run_with_cache(toks, names_filter=[site], stop_at_layer=stop)
        acts = cache[site]
        idx = torch.tensor([_pick(s, int(n), position) for s, n in zip(chunk, lengths)], device=acts.device)
        out.append(acts[torch.arange(len(chunk), device=acts.device), idx].float().cpu())
    return check_activations(torch.cat(out), what=f"activations at {hook_name}")


@torch.no_grad()
def gather_token_activations(
    model: HookedTransformer,
    texts: Sequence[str],
    hook_name: str,
    batch_size: int = 32,
    skip_bos: bool = True,
    progress: bool = False,
) -> Float[Tensor, "n_tokens d_in"]:
    """Activations at every real token position of every text (padding never included)."""
    site = read_site(model, hook_name)
    seqs = tokenize(model, texts)
    stop = stop_layer(hook_name)
    out = []
    first = 1 if skip_bos and model.cfg.default_prepend_bos else 0
    for start in tqdm(range(0, len(seqs), batch_size), desc=f"token activations @ {hook_name}", disable=not progress):
        chunk = seqs[start : start + batch_size]
        toks, lengths = pad_right(chunk)
        _, cache = model.run_with_cache(toks.to(model.cfg.device), names_filter=[site], stop_at_layer=stop)
        acts = cache[site].float().cpu()
        out += [acts[i, first : int(n)] for i, n in enumerate(lengths)]
    return check_activations(torch.cat(out), what=f"activations at {hook_name}")


def check_activations(acts: Tensor, d_in: int | None = None, what: str = "activations") -> Tensor:
    """Return `acts` if it is [n, d_in] (any width when d_in is None) and finite; else raise saying what to fix."""
    if d_in is not None and (acts.ndim != 2 or acts.shape[1] != d_in):
        raise ValueError(
            f"{what} have shape {tuple(acts.shape)} but the SAE expects [n, d_in={d_in}]; "
            "gather them at the hook the SAE was trained on."
        )
    if not torch.isfinite(acts).all():
        bad = (~torch.isfinite(acts)).reshape(len(acts), -1).any(-1).sum().item()
        raise ValueError(f"{bad} rows of {what} contain NaN or inf; check the model's weights and dtype.")
    return acts
