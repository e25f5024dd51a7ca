"""The one adapter to TransformerLens: hook names, model files, and activation gathering.

Every TransformerLens call of align_lens goes through here, so a move to TransformerLens 4's
TransformerBridge touches this file only.
"""

from __future__ import annotations

import difflib
import json
import re
import tempfile
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import cast

import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from align_lens.files import check_safetensors, read_json, replace_entries

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


# ---- tokens ---------------------------------------------------------------------------------
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


# ---- running with hooks ------------------------------------------------------------------------
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


def run_with_cache(model: HookedTransformer, tokens: Tensor, names: Sequence[str]):
    """(logits, activation cache of the hooks in `names`)."""
    return model.run_with_cache(tokens, names_filter=list(names))


# ---- model files ---------------------------------------------------------------------------
def build_model(cfg: dict | HookedTransformerConfig, tokenizer=None, device: str = "cpu") -> HookedSAETransformer:
    """A HookedSAETransformer from a config (dict or object), without the Hub."""
    with quiet():
        if isinstance(cfg, dict):
            cfg = HookedTransformerConfig(**{**cfg, "device": device})
        return HookedSAETransformer(cfg, tokenizer=tokenizer, move_to_device=False).to(device)


def save_model(model: HookedTransformer, path: str | Path) -> Path:
    """Write config, safetensors weights and tokenizer folder; `load_model` reads them back.

    The three are written to a temporary folder first and then replace their namesakes in `path` (a model
    without a tokenizer removes an old tokenizer folder); other files in `path` are left alone.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; give a folder path to save the model into.")
    path.mkdir(parents=True, exist_ok=True)
    cfg = {k: v for k, v in model.cfg.to_dict().items()}
    cfg["dtype"] = str(cfg["dtype"]).removeprefix("torch.")
    cfg.pop("device", None)
    with tempfile.TemporaryDirectory(prefix=f".{path.name}.", dir=path) as tmp:
        tmp = Path(tmp)
        (tmp / MODEL_CONFIG).write_text(json.dumps(cfg, indent=1, default=str))
        save_file({k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}, tmp / MODEL_WEIGHTS)
        if model.tokenizer is not None:
            model.tokenizer.save_pretrained(tmp / TOKENIZER_DIR)
        replace_entries(path, tmp, (MODEL_WEIGHTS, TOKENIZER_DIR, MODEL_CONFIG))
    return path


def load_model(path: str | Path, device: str = "cpu") -> HookedSAETransformer:
    """Load a folder written by `save_model` (config built by hand: no `from_pretrained`, works offline)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    if not (path / MODEL_CONFIG).exists():
        raise FileNotFoundError(f"{path} has no {MODEL_CONFIG}; expected a folder written by save_model().")
    cfg = read_json(path / MODEL_CONFIG, "model config")
    check_safetensors(path / MODEL_WEIGHTS, "model weights")
    cfg["dtype"] = getattr(torch, cfg["dtype"])
    valid = set(HookedTransformerConfig.__dataclass_fields__)
    cfg = {k: v for k, v in cfg.items() if k in valid and k not in ("n_params",)}
    tok_dir = path / TOKENIZER_DIR
    tokenizer = PreTrainedTokenizerFast.from_pretrained(str(tok_dir)) if tok_dir.exists() else None
    model = build_model(cfg, tokenizer=tokenizer, device=device)
    model.load_state_dict(load_file(path / MODEL_WEIGHTS, device=device), strict=True)
    return model.eval()


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
            f"{name!r} is neither a folder saved by align_lens.save_model nor a TransformerLens model name "
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


def act_patch_resid_pre(model: HookedTransformer, corrupted_tokens: Tensor, clean_cache, metric) -> Tensor:
    """TransformerLens' per-layer, per-position residual patching (`patching.get_act_patch_resid_pre`)."""
    with quiet():
        from transformer_lens import patching

        return patching.get_act_patch_resid_pre(model, corrupted_tokens, clean_cache, metric)
