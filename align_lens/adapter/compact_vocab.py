"""Compact vocabulary storage: a full-vocabulary model stored as the vocabulary rows it uses.

A model trained on text that uses a few thousand of a tokenizer's ids (e.g. 1,095 of GPT-2's 50,257) keeps every
other token at an exactly reconstructible fill: a zero embedding row, a zero unembedding column and
`b_U = UNUSED_LOGIT_BIAS`, so it never predicts one. Its state dict is stored with W_E, W_U and b_U cut to the used
ids, in fp16, plus those ids (`VOCAB_ROWS`); expanding it back gives the saved model rounded to fp16.
`save_transformer(..., vocab_rows=...)` and `load_transformer` use these for a folder's `compact.safetensors`.
"""

from __future__ import annotations

import torch
from jaxtyping import Int
from torch import Tensor

COMPACT_WEIGHTS = "compact.safetensors"
VOCAB_ROWS = "vocab_rows"
UNUSED_LOGIT_BIAS = -1.0e4  # exact in fp16; far below any logit a LayerNorm-ed residual gives
VOCAB_TENSORS = {"embed.W_E": 0, "unembed.W_U": 1, "unembed.b_U": 0}  # name → vocabulary dimension


def compact_state(state: dict[str, Tensor], rows: Int[Tensor, " n_used"]) -> dict[str, Tensor]:
    """`state` (full vocabulary) as fp16 tensors with the vocabulary ones cut to `rows`, plus `VOCAB_ROWS`.

    Refuses a state whose tokens outside `rows` are not at the fill (they could not be rebuilt).
    """
    rows = torch.as_tensor(rows, dtype=torch.long).cpu()
    out = {}
    for name, tensor in state.items():
        tensor = tensor.detach().cpu()
        if name in VOCAB_TENSORS:
            dim = VOCAB_TENSORS[name]
            used = tensor.index_select(dim, rows)
            if not torch.equal(scatter_rows(used, rows, tensor.shape[dim], name), tensor):
                raise ValueError(
                    f"{name} has tokens outside the {len(rows)} given rows that are not at the fill (zero; b_U "
                    f"{UNUSED_LOGIT_BIAS}); pass every token id the model uses as vocab_rows."
                )
            tensor = used
        out[name] = (tensor.to(torch.float16) if tensor.is_floating_point() else tensor).contiguous()
    out[VOCAB_ROWS] = rows.contiguous()
    return out


def expand_state(weights: dict[str, Tensor], d_vocab: int) -> dict[str, Tensor]:
    """The float32 full-vocabulary state dict of `compact_state`'s output."""
    weights = dict(weights)
    rows = weights.pop(VOCAB_ROWS)
    state = {}
    for name, tensor in weights.items():
        tensor = tensor.float() if tensor.dtype == torch.float16 else tensor
        state[name] = scatter_rows(tensor, rows, d_vocab, name) if name in VOCAB_TENSORS else tensor
    return state


def scatter_rows(used: Tensor, rows: Int[Tensor, " n_used"], d_vocab: int, name: str) -> Tensor:
    """Vocabulary tensor `name` with `used` placed at `rows` of a `d_vocab`-long dimension and the fill elsewhere."""
    dim = VOCAB_TENSORS[name]
    shape = list(used.shape)
    shape[dim] = d_vocab
    fill = UNUSED_LOGIT_BIAS if name == "unembed.b_U" else 0.0
    out = torch.full(shape, fill, dtype=used.dtype, device=used.device)
    return out.index_copy(dim, rows.to(used.device), used)
