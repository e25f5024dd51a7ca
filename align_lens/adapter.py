"""The one adapter to TransformerLens: hook names, model files, and activation gathering.

Every TransformerLens call of align_lens goes through here, so a move to TransformerLens 4's
TransformerBridge touches this file only.
"""

from __future__ import annotations

import difflib
import json
import re
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from pathlib import Path

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    from sae_lens import HookedSAETransformer
    from transformer_lens import HookedTransformer, HookedTransformerConfig

Position = str | int | Callable[[Tensor], int]

MODEL_CONFIG = "tl_config.json"
MODEL_WEIGHTS = "model.safetensors"
TOKENIZER_DIR = "tokenizer"


@contextmanager
def quiet():
    """Silence TransformerLens 3.9's per-construction deprecation warnings."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*TransformerBridge.*")
        yield


# ---- hook names ---------------------------------------------------------------------------
def resolve_hook(model: HookedTransformer, hook_name: str) -> str:
    """Return `hook_name` if the model has it; otherwise raise, listing the closest valid names."""
    names = list(model.hook_dict)
    if hook_name in model.hook_dict:
        return hook_name
    close = difflib.get_close_matches(hook_name, names, n=5, cutoff=0.4)
    raise KeyError(
        f"hook {hook_name!r} is not in the model. Closest valid names: {close}. "
        f"Residual hooks look like 'blocks.0.hook_resid_post'."
    )


def residual_hooks(model: HookedTransformer) -> list[str]:
    """All residual-stream hooks, in forward order (resid_pre 0, resid_post 0, ..., resid_post L-1)."""
    n = model.cfg.n_layers
    return ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(n)]


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
    if hasattr(model, "get_sae_hook_name"):
        return model.get_sae_hook_name(sae, internal=internal)
    return f"{sae.cfg.metadata.hook_name}.{internal}"


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


# ---- tokens ---------------------------------------------------------------------------------
def tokenize(model: HookedTransformer, prompts: Sequence[str]) -> list[Int[Tensor, " seq"]]:
    """One 1-D token tensor per prompt (BOS prepended as the model's default)."""
    return [model.to_tokens(p)[0] for p in prompts]


def pad_right(seqs: Sequence[Tensor], pad_id: int = 0) -> tuple[Int[Tensor, "b seq"], Int[Tensor, " b"]]:
    """Right-pad; causal attention means real tokens never see the padding."""
    lengths = torch.tensor([len(s) for s in seqs])
    out = torch.full((len(seqs), int(lengths.max())), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lengths


# ---- model files ---------------------------------------------------------------------------
def build_model(cfg: dict | HookedTransformerConfig, tokenizer=None, device: str = "cpu") -> HookedSAETransformer:
    """A HookedSAETransformer from a config (dict or object), without the Hub."""
    with quiet():
        if isinstance(cfg, dict):
            cfg = HookedTransformerConfig(**{**cfg, "device": device})
        return HookedSAETransformer(cfg, tokenizer=tokenizer, move_to_device=False).to(device)


def save_model(model: HookedTransformer, path: str | Path) -> Path:
    """Write config, safetensors weights and tokenizer folder; `load_model` reads them back."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in model.cfg.to_dict().items()}
    cfg["dtype"] = str(cfg["dtype"]).removeprefix("torch.")
    cfg.pop("device", None)
    (path / MODEL_CONFIG).write_text(json.dumps(cfg, indent=1, default=str))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, path / MODEL_WEIGHTS)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(path / TOKENIZER_DIR)
    return path


def load_model(path: str | Path, device: str = "cpu") -> HookedSAETransformer:
    """Load a folder written by `save_model` (config built by hand: no `from_pretrained`, works offline)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / MODEL_CONFIG).exists():
        raise FileNotFoundError(f"{path} has no {MODEL_CONFIG}; expected a folder written by save_model().")
    cfg = json.loads((path / MODEL_CONFIG).read_text())
    cfg["dtype"] = getattr(torch, cfg["dtype"])
    valid = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = {k: v for k, v in cfg.items() if k in valid and k not in ("n_params",)}
    tok_dir = path / TOKENIZER_DIR
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir)) if tok_dir.exists() else None
    model = build_model(cfg, tokenizer=tokenizer, device=device)
    model.load_state_dict(load_file(path / MODEL_WEIGHTS, device=device), strict=True)
    return model.eval()


def act_patch_resid_pre(model: HookedTransformer, corrupted_tokens: Tensor, clean_cache, metric) -> Tensor:
    """TransformerLens' per-layer, per-position residual patching (`patching.get_act_patch_resid_pre`)."""
    with quiet():
        from transformer_lens import patching

        return patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)
