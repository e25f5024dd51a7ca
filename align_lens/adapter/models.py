"""TransformerLens model files: build from a config, save / load a folder, or download by name."""

from __future__ import annotations

import difflib
import json
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from align_lens.adapter.compact_vocab import (
    COMPACT_WEIGHTS,
    VOCAB_TENSORS,
    compact_state,
    expand_state,
    scatter_rows,
)
from align_lens.adapter.quiet import HookedSAETransformer, HookedTransformer, HookedTransformerConfig, quiet
from align_lens.files import check_safetensors, read_json, replace_entries

MODEL_CONFIG = "tl_config.json"
MODEL_WEIGHTS = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


def build_model(cfg: dict | HookedTransformerConfig, tokenizer=None, device: str = "cpu") -> HookedSAETransformer:
    """A HookedSAETransformer from a config (dict or object), without the Hub."""
    with quiet():
        if isinstance(cfg, dict):
            cfg = HookedTransformerConfig(**{**cfg, "device": device})
        return HookedSAETransformer(cfg, tokenizer=tokenizer, move_to_device=False).to(device)


def save_transformer(model: HookedTransformer, path: str | Path, vocab_rows: Sequence[int] | None = None) -> Path:
    """Write config, safetensors weights and tokenizer folder; `load_transformer` reads them back.

    `vocab_rows`: store compactly (`compact_vocab`): the weights in fp16 with the vocabulary cut to these ids,
    every other token being at the fill (checked). The three are written to a temporary folder first and then
    replace their namesakes in `path` (a model without a tokenizer removes an old tokenizer folder, and either
    weights file the other); other files in `path` are left alone.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; give a folder path to save the model into.")
    path.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in model.cfg.to_dict().items()}
    cfg["dtype"] = str(cfg["dtype"]).removeprefix("torch.")
    cfg.pop("device", None)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    if vocab_rows is not None:
        state, cfg["dtype"] = compact_state(state, torch.as_tensor(vocab_rows)), "float32"
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path) as tmp:
        tmp = Path(tmp)
        (tmp / MODEL_CONFIG).write_text(json.dumps(cfg, indent=1, default=str))
        save_file(state, tmp / (MODEL_WEIGHTS if vocab_rows is None else COMPACT_WEIGHTS))
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        replace_entries(path, tmp, (MODEL_WEIGHTS, COMPACT_WEIGHTS, TOKENIZER_DIR, MODEL_CONFIG))
    return path


def load_transformer(path: str | Path, device: str = "cpu") -> HookedSAETransformer:
    """Load a folder written by `save_transformer` (config built by hand: no `from_pretrained`, works offline); a
    compact folder gives the ordinary full-vocabulary model, in float32."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / MODEL_CONFIG).exists():
        raise FileNotFoundError(f"{path} has no {MODEL_CONFIG}; expected a folder written by save_transformer().")
    cfg = read_json(path / MODEL_CONFIG, "model config")
    compact = (path / COMPACT_WEIGHTS).exists()
    weights_file = path / (COMPACT_WEIGHTS if compact else MODEL_WEIGHTS)
    check_safetensors(weights_file, "model weights")
    cfg["dtype"] = getattr(torch, cfg["dtype"])
    valid = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = {k: v for k, v in cfg.items() if k in valid and k not in ("n_params",)}
    tok_dir = path / TOKENIZER_DIR
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir)) if tok_dir.exists() else None
    model = build_model(cfg, tokenizer=tokenizer, device=device)
    state = load_file(weights_file, device=device)
    model.load_state_dict(expand_state(state, cfg["d_vocab"]) if compact else state, strict=True)
    return model.eval()


def expand_vocab(compact: HookedTransformer, rows: Sequence[int], d_vocab: int, tokenizer=None) -> HookedSAETransformer:
    """A model with `d_vocab` tokens whose token `rows[i]` is token i of `compact`, every other token at the fill
    of `compact_vocab` (so it is saved compactly with `save_transformer(model, path, vocab_rows=rows)`)."""
    rows_t = torch.as_tensor(rows, dtype=torch.long)
    cfg = dict(compact.cfg.to_dict())  # to_dict returns the live __dict__
    cfg.update(d_vocab=d_vocab, d_vocab_out=d_vocab)
    cfg.pop("device", None)
    cfg.pop("n_params", None)
    full = build_model(cfg, tokenizer=tokenizer, device=str(next(compact.parameters()).device))
    state = {
        name: scatter_rows(t, rows_t, d_vocab, name) if name in VOCAB_TENSORS else t
        for name, t in compact.state_dict().items()
    }
    full.load_state_dict(state, strict=True)
    return full.eval()


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face endpoint accepts a TCP connection within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    from huggingface_hub import constants

    url = urlparse(constants.ENDPOINT)
    try:
        socket.create_connection((url.hostname or "huggingface.co", url.port or 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def load_pretrained(name: str, device: str = "cpu") -> HookedSAETransformer:
    """`HookedSAETransformer.from_pretrained(name)` that fails within seconds, naming the cause, when the
    weights are neither in the Hugging Face cache nor downloadable (HF_HUB_OFFLINE=1, or no network)."""
    from huggingface_hub import constants, try_to_load_from_cache
    from transformer_lens import loading_from_pretrained as loading

    try:
        official = loading.get_official_model_name(name)
    except ValueError:
        names = loading.OFFICIAL_MODEL_NAMES  # pyright: ignore[reportPrivateImportUsage]  (public, not in __all__)
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
        raise ValueError(
            f"{name!r} is neither a folder saved by align_lens.save_transformer nor a TransformerLens model name "
            f"(closest names: {close}); check the path or the name."
        ) from None
    cached = isinstance(try_to_load_from_cache(official, "config.json"), str)
    if not cached and constants.HF_HUB_OFFLINE:
        raise ConnectionError(
            f"{name} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it; unset "
            "HF_HUB_OFFLINE on a machine with network access to download it once."
        )
    if not constants.HF_HUB_OFFLINE and not _hub_reachable():
        raise ConnectionError(
            f"cannot reach {constants.ENDPOINT} to load {name}; connect to the network"
            + (", or set HF_HUB_OFFLINE=1 to use the cached copy." if cached else " (it is not in the local cache).")
        )
    with quiet():
        return HookedSAETransformer.from_pretrained(name, device=device).eval()
