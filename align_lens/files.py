"""Saving folders so a target never mixes old and new files, and reading saved files with errors that name them."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o777 & ~mask


@contextmanager
def replaced_folder(path: str | Path, owned: Sequence[str] | None = None) -> Iterator[Path]:
    """Yield an empty temporary sibling of `path`; on success it replaces `path` as a whole.

    Nothing is left of a previous `path` (no stale files), and on an error `path` is untouched. `owned`
    (file and folder names) guards against deleting someone else's files: a non-empty `path` holding any other
    name is refused before anything is written.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{path} is a file; give a folder path to save into.")
    if path.is_dir() and owned is not None:
        foreign = sorted(p.name for p in path.iterdir() if p.name not in owned)
        if foreign:
            raise FileExistsError(
                f"{path} holds {foreign}, which a save would delete; save into a new or empty folder "
                f"(a previous save holds only {sorted(owned)})."
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, _umask_mode())
    try:
        yield tmp
        old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
        if path.exists():
            path.rename(old)
        tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def replace_entries(target: str | Path, source: str | Path, names: Sequence[str]) -> None:
    """Move each of `names` from `source` into `target`, replacing (or, when absent in `source`, deleting) the
    entry of that name in `target`; other entries of `target` are left alone."""
    target, source = Path(target), Path(source)
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        dst = target / name
        old = dst.with_name(f".{name}.old-{uuid.uuid4().hex[:8]}")
        if dst.exists():
            dst.rename(old)
        if (source / name).exists():
            (source / name).rename(dst)
        if old.is_dir():
            shutil.rmtree(old)
        elif old.exists():
            old.unlink()


def read_json(path: str | Path, what: str = "file") -> Any:
    """Parsed JSON of `path`; a missing, truncated or damaged file raises naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{what} {path} is not valid JSON ({e}); it is truncated or damaged: re-save it.") from None


def check_safetensors(path: str | Path, what: str = "weights file") -> None:
    """Raise naming `path` when it is missing or not a complete safetensors file (header and data length)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {path} does not exist.")
    size = path.stat().st_size
    try:
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(n)) if 8 + n <= size else {"": {"data_offsets": [0, size]}}
        end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
        complete = 8 + n + end == size
    except (ValueError, TypeError, KeyError, AttributeError, IndexError):
        complete = False
    if not complete:
        raise ValueError(f"{what} {path} is not a complete safetensors file; it is truncated or damaged: re-save it.")
