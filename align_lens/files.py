"""Saving folders so a target never mixes old and new files, and reading saved files with errors that name them."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator, Sequence
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
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _swap_in(tmp, path)


def _swap_in(new: Path, path: Path) -> None:
    """Put folder `new` at `path`; the old `path` is renamed aside and deleted only once `new` is in place."""
    old = path.with_name(f".{path.name}.old-{uuid.uuid4().hex[:8]}")
    if path.exists():
        path.rename(old)
    try:
        new.rename(path)
    except BaseException:
        if old.exists():
            old.rename(path)
        shutil.rmtree(new, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


# ---- command outputs ----------------------------------------------------------------------------------
OUTPUT_MARKER = ".align_lens_output"  # in every folder a command writes: the only folders --overwrite replaces
_OLD_MARKERS = (".align_lens_demo",)  # what demo runs wrote before every command carried OUTPUT_MARKER


def written_by_align_lens(folder: Path) -> bool:
    """Whether `folder` carries the marker every align_lens command writes into its output folder."""
    return any((folder / name).is_file() for name in (OUTPUT_MARKER, *_OLD_MARKERS))


def check_output(
    out: str | Path, overwrite: bool, sources: Iterable[str | Path | None] = (), option: str = "--out"
) -> None:
    """Refuse an output folder that a run could not replace without losing something: a bad place
    (`check_output_place`), a non-empty folder without `overwrite`, and, even with `overwrite`, a non-empty
    folder no align_lens command wrote (no OUTPUT_MARKER)."""
    out = Path(out)
    check_output_place(out, sources, option)
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(
                f"{option} {out} already exists and is not empty; pass --overwrite or another {option}"
            )
        if not written_by_align_lens(out):
            raise FileExistsError(
                f"{option} {out} was not written by align_lens (no {OUTPUT_MARKER} file), so --overwrite will not "
                "delete it; choose another folder or remove it yourself"
            )


def check_output_place(out: str | Path, sources: Iterable[str | Path | None] = (), option: str = "--out") -> None:
    """Refuse an output folder that is a file, the working folder or one of its parents, or that is or holds one
    of `sources` (the run's inputs, compared by resolved path)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NotADirectoryError(f"{option} {out} is a file; pass a folder path")
    target, here = out.expanduser().resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        raise ValueError(
            f"{option} {out} is the working folder or one of its parents, which the output would replace; "
            f"pass a new folder such as {option} runs/out"
        )
    for source in filter(None, sources):
        path = Path(source).expanduser().resolve()
        if path == target or target in path.parents:
            raise ValueError(
                f"{option} {out} holds the input {source}, which the output would replace; pass another {option}"
            )


@contextmanager
def output_folder(
    out: str | Path, overwrite: bool, sources: Iterable[str | Path | None] = (), option: str = "--out"
) -> Iterator[Path]:
    """After `check_output`, a fresh folder beside `out`, marked as align_lens output, to write the run into; it
    replaces `out` as a whole only when the block succeeds, so a failed run leaves `out` as it was."""
    check_output(out, overwrite, sources, option)
    with replaced_folder(out) as stage:
        yield stage
        (stage / OUTPUT_MARKER).write_text("written by align_lens; `--overwrite` may replace this folder\n")


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


def strict_json(payload: Any, indent: int | None = 1) -> str:
    """`payload` as strict JSON (what any parser accepts): a non-finite number (not measured) becomes null.
    `indent=None`: one line (a JSON-lines row)."""
    return json.dumps(_nulls_for_nan(payload), indent=indent, default=str, allow_nan=False)


def _nulls_for_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _nulls_for_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nulls_for_nan(v) for v in value]
    return value
