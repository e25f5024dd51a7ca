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
from jaxtyping import Float, Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm

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
    resolve_hook(model, hook_name)
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
        _, cache = model.run_with_cache(toks, names_filter=[hook_name], stop_at_layer=stop)
        acts = cache[hook_name]
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
    resolve_hook(model, hook_name)
    seqs = tokenize(model, texts)
    stop = stop_layer(hook_name)
    out = []
    first = 1 if skip_bos and model.cfg.default_prepend_bos else 0
    for start in tqdm(range(0, len(seqs), batch_size), desc=f"token activations @ {hook_name}", disable=not progress):
        chunk = seqs[start : start + batch_size]
        toks, lengths = pad_right(chunk)
        _, cache = model.run_with_cache(toks.to(model.cfg.device), names_filter=[hook_name], stop_at_layer=stop)
        acts = cache[hook_name].float().cpu()
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
