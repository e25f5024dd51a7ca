"""Tokenising, padding, answer tokens and decoding: never truncated, checked against the model's context."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import cast

import torch
from jaxtyping import Int
from torch import Tensor

from align_lens.adapter.quiet import HookedTransformer

Position = str | int | Callable[[Tensor], int]


def tokenize(model: HookedTransformer, prompts: Sequence[str], room: int = 0) -> list[Int[Tensor, " seq"]]:
    """One 1-D token tensor per prompt (BOS prepended as the model's default), never truncated.

    A prompt that leaves fewer than `room` positions of the model's context (n_ctx) free raises, naming it.
    """
    seqs = [model.to_tokens(p, truncate=False)[0] for p in prompts]
    check_context(model, seqs, room)
    return seqs


def check_context(model: HookedTransformer, seqs: Sequence[Tensor], room: int = 0) -> None:
    """Raise naming the first token sequence longer than the model's context minus `room`."""
    limit = model.cfg.n_ctx - room
    for i, s in enumerate(seqs):
        if len(s) > limit:
            need = f" plus {room} to generate" if room else ""
            raise ValueError(
                f"prompt {i} has {len(s)} tokens{need}, more than the model's context of {model.cfg.n_ctx} "
                "(cfg.n_ctx); shorten or drop it (it would be truncated and read at the wrong token)."
            )


def pad_right(seqs: Sequence[Tensor], pad_id: int = 0) -> tuple[Int[Tensor, "b seq"], Int[Tensor, " b"]]:
    """Right-pad; causal attention means real tokens never see the padding."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


def pad_id(model: HookedTransformer) -> int:
    """The tokenizer's pad id (0 when the model has no tokenizer or no pad token)."""
    tok = model.tokenizer
    pad = tok.pad_token_id if tok is not None else None
    return pad if isinstance(pad, int) else 0


def answer_tokens(model: HookedTransformer, answer: str) -> list[int]:
    """Tokens of an answer as the model writes it after the prompt (leading space, no BOS)."""
    return model.to_tokens(" " + answer.strip(), prepend_bos=False)[0].tolist()


def answer_str_tokens(model: HookedTransformer, answer: str) -> list[str]:
    """The same tokens as `answer_tokens`, as strings."""
    return cast(list[str], model.to_str_tokens(" " + answer.strip(), prepend_bos=False))


def decode_text(model: HookedTransformer, ids: Sequence[int]) -> str:
    """Token ids → text, special tokens dropped."""
    if model.tokenizer is None:
        raise ValueError("the model has no tokenizer; give HookedTransformer(cfg, tokenizer=...) one to decode text")
    return cast(str, model.tokenizer.decode(list(ids), skip_special_tokens=True)) if ids else ""


def stop_ids(model: HookedTransformer) -> set[int]:
    """Token ids that end an answer: eos plus any token containing a newline (never '.')."""
    tok = model.tokenizer
    ids: set[int] = set()
    if tok is None:
        return ids
    if isinstance(tok.eos_token_id, int):
        ids.add(tok.eos_token_id)
    for t, i in tok.get_vocab().items():
        if "\n" in t or "Ċ" in t:
            ids.add(int(i))
    return ids
