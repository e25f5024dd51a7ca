"""Training checkpoints: atomic writes, safe loads (no code execution), fingerprints, keep-newest-N.

A checkpoint is a dict of tensors and plain Python values written with `torch.save` and read back with
`torch.load(weights_only=True)`, so a planted file can never run code. Fingerprints say what a checkpoint
was written for; `check_fingerprint` refuses to resume anything else and names what differs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def save(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write `state` to `path` atomically: a temporary sibling file, then `os.replace`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(dict(state), f)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by `save`; only tensors and plain values are accepted (weights_only)."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"cannot read checkpoint {path}: it holds Python objects other than tensors and plain values, which "
            "align_lens never loads (unpickling them could run code); it was not written by align_lens. Delete it "
            "or use another checkpoint folder."
        ) from None
    except Exception as e:
        raise ValueError(
            f"cannot read checkpoint {path} ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}); "
            "it is damaged or was not written by align_lens. Delete it or use another checkpoint folder."
        ) from e


def keep_newest(folder: str | Path, pattern: str, keep: int) -> None:
    """Delete all but the `keep` newest files matching `pattern` (names sort by age, e.g. step_000100.pt)."""
    for old in sorted(Path(folder).glob(pattern))[: -keep if keep > 0 else None]:
        old.unlink()


# ---- fingerprints ---------------------------------------------------------------------------
def tensor_hash(tensors: Mapping[str, Tensor] | Tensor) -> str:
    """sha256 (first 16 hex digits) of tensors' names, shapes, dtypes and bytes."""
    items = {"": tensors} if isinstance(tensors, Tensor) else tensors
    h = hashlib.sha256()
    for name in sorted(items):
        t = items[name].detach().cpu().contiguous()
        h.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def json_hash(value: Any) -> str:
    """sha256 (first 16 hex digits) of a JSON-serialisable value, keys sorted."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def sae_fingerprint(sae) -> dict[str, Any]:
    """Architecture, sizes and a weight hash of a SAELens SAE."""
    return {
        "architecture": sae.cfg.architecture(),
        "d_in": int(sae.cfg.d_in),
        "d_sae": int(sae.cfg.d_sae),
        "k": getattr(sae.cfg, "k", None),
        "weights": tensor_hash(sae.state_dict()),
    }


RUNTIME_ONLY = frozenset({"progress", "threads", "checkpoint_dir", "n_checkpoints", "compile"})


def fingerprint(settings: Any, exclude: Collection[str] = RUNTIME_ONLY, **inputs: Any) -> dict[str, Any]:
    """What a resumable run's checkpoints are valid for, in one shape for every trainer: its `inputs` (hashes of
    its data, the SAE it starts from, …) and its `settings` (a config dataclass or a dict) less the fields named
    in `exclude` at any depth (by default those that do not change the numbers). JSON-plain, so a fingerprint
    read back from a checkpoint compares equal (`check_fingerprint`)."""
    values = dict(settings) if isinstance(settings, Mapping) else dataclasses.asdict(settings)
    return json.loads(json.dumps({**inputs, "settings": _without(values, exclude)}, default=str))


def _without(values: Any, exclude: Collection[str]) -> Any:
    if not isinstance(values, dict):
        return values
    return {k: _without(v, exclude) for k, v in values.items() if k not in exclude}


def check_fingerprint(found: Mapping[str, Any], expected: Mapping[str, Any], where: str | Path) -> None:
    """Raise ValueError naming every entry that differs between a checkpoint's fingerprint and this run's."""
    found, expected = json.loads(json.dumps(found, default=str)), json.loads(json.dumps(expected, default=str))
    diffs = _diff(found, expected)
    if diffs:
        raise ValueError(
            f"checkpoint {where} was written for a different run; it differs in "
            + "; ".join(diffs)
            + ". Delete the checkpoint or use another checkpoint folder to start afresh."
        )


def _diff(found: Any, expected: Any, prefix: str = "") -> list[str]:
    if isinstance(found, dict) and isinstance(expected, dict):
        out = []
        for key in sorted(set(found) | set(expected)):
            out += _diff(found.get(key), expected.get(key), f"{prefix}{key}.")
        return out
    if found != expected:
        return [f"{prefix.rstrip('.')} (checkpoint: {found!r}, now: {expected!r})"]
    return []


def save_json(path: str | Path, value: Any) -> Path:
    """Write `value` as JSON atomically (temporary sibling file, then `os.replace`)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(value, f, indent=1, sort_keys=True, default=str)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
