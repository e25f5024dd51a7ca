"""Full-vocabulary models whose unused vocabulary rows follow a fixed rule, stored as the used rows only.

A model trained on a world that uses a few thousand of GPT-2's 50,257 tokens keeps every other token at an
exactly reconstructible fill: a zero embedding row, a zero unembedding column and `b_U = UNUSED_LOGIT_BIAS`, so
the model never predicts one. The folder holds the usual `tl_config.json` (full `d_vocab`) and tokenizer, and
`compact.safetensors`: fp16 weights with W_E, W_U and b_U cut to the used ids, plus those ids (`vocab_rows`).
Loading rebuilds an ordinary full-vocabulary model equal to the saved one rounded to fp16.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from align_lens.adapter import MODEL_CONFIG, TOKENIZER_DIR, build_model

COMPACT_WEIGHTS = "compact.safetensors"
VOCAB_ROWS = "vocab_rows"
UNUSED_LOGIT_BIAS = -1.0e4  # exact in fp16; far below any logit a LayerNorm-ed residual gives
VOCAB_TENSORS = {"embed.W_E": 0, "unembed.W_U": 1, "unembed.b_U": 0}  # name → vocabulary dimension


def expand_vocab(compact, rows: Int[Tensor, " n_used"], d_vocab: int, tokenizer=None):
    """A model with `d_vocab` tokens whose token `rows[i]` is token i of `compact`; every other token gets the fill."""
    cfg = dict(compact.cfg.to_dict())  # to_dict returns the live __dict__
    cfg.update(d_vocab=d_vocab, d_vocab_out=d_vocab)
    cfg["dtype"] = compact.cfg.dtype
    cfg.pop("device", None)
    cfg.pop("n_params", None)
    full = build_model(cfg, tokenizer=tokenizer, device=str(next(compact.parameters()).device))
    state = full.state_dict()
    for name, tensor in compact.state_dict().items():
        if name in VOCAB_TENSORS:
            state[name] = _scatter(tensor, rows, d_vocab, VOCAB_TENSORS[name], name == "unembed.b_U")
        else:
            state[name] = tensor
    full.load_state_dict(state, strict=True)
    return full.eval()


def save_compact(model, rows: Int[Tensor, " n_used"], path: str | Path) -> Path:
    """Write `model` (full vocabulary, unused rows at the fill) as config, tokenizer and fp16 compact weights.

    Refuses a model whose tokens outside `rows` do not follow the fill rule (they could not be rebuilt).
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    rows = torch.as_tensor(rows, dtype=torch.long).cpu()
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    out = {}
    for name, tensor in state.items():
        if name in VOCAB_TENSORS:
            dim = VOCAB_TENSORS[name]
            rebuilt = _scatter(tensor.index_select(dim, rows), rows, tensor.shape[dim], dim, name == "unembed.b_U")
            if not torch.equal(rebuilt, tensor):
                raise ValueError(
                    f"{name} has tokens outside the {len(rows)} given rows that are not at the fill (zero; b_U "
                    f"{UNUSED_LOGIT_BIAS}); pass every token id the model uses as rows."
                )
            tensor = tensor.index_select(dim, rows)
        out[name] = (tensor.to(torch.float16) if tensor.is_floating_point() else tensor).contiguous()
    out[VOCAB_ROWS] = rows.contiguous()
    cfg = dict(model.cfg.to_dict())
    cfg["dtype"] = "float32"
    cfg.pop("device", None)
    (path / MODEL_CONFIG).write_text(json.dumps(cfg, indent=1, default=str))
    save_file(out, path / COMPACT_WEIGHTS)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(path / TOKENIZER_DIR)
    return path


def load_compact(path: str | Path, device: str = "cpu"):
    """The full-vocabulary float32 model of a folder written by `save_compact`."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / COMPACT_WEIGHTS).exists():
        raise FileNotFoundError(f"{path} has no {COMPACT_WEIGHTS}; expected a folder written by save_compact().")
    cfg = json.loads((path / MODEL_CONFIG).read_text())
    cfg["dtype"] = torch.float32
    cfg = {k: v for k, v in cfg.items() if k != "n_params"}
    weights = load_file(path / COMPACT_WEIGHTS)
    rows = weights.pop(VOCAB_ROWS)
    d_vocab = cfg["d_vocab"]
    tok_dir = path / TOKENIZER_DIR
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir)) if tok_dir.exists() else None
    model = build_model(cfg, tokenizer=tokenizer, device=device)
    state = {}
    for name, tensor in weights.items():
        tensor = tensor.float() if tensor.dtype == torch.float16 else tensor
        if name in VOCAB_TENSORS:
            tensor = _scatter(tensor, rows, d_vocab, VOCAB_TENSORS[name], name == "unembed.b_U")
        state[name] = tensor.to(device)
    model.load_state_dict(state, strict=True)
    return model.eval()


def _scatter(used: Tensor, rows: Tensor, d_vocab: int, dim: int, is_bias: bool) -> Tensor:
    """`used` placed at `rows` along `dim` of a `d_vocab`-long tensor holding the fill elsewhere."""
    shape = list(used.shape)
    shape[dim] = d_vocab
    fill = UNUSED_LOGIT_BIAS if is_bias else 0.0
    out = torch.full(shape, fill, dtype=used.dtype, device=used.device)
    return out.index_copy(dim, rows.to(used.device), used)
