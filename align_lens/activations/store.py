"""An on-disk activation store: sharded safetensors plus a JSON manifest, read row by row with bounded memory.

Layout of a store folder:
    manifest.json            what was gathered (model name, hashes of its weights and tokenizer, hook, position
                             rule, dtypes, a hash of the texts, concepts, ontology hash), the shards written so
                             far (file, rows, sha256) and whether the gather finished
    shard_00000.safetensors  "activations" [rows, d_in] in the stored dtype, "labels" [rows] for labelled sets
    shard_00001.safetensors  ...

A gather writes one shard per `prompts_per_shard` prompts and updates the manifest after each, so an
interrupted gather rerun with the same arguments keeps the finished shards and continues; a rerun with another
model, hook or texts is refused naming what differs. Opening a store checks every shard's checksum and shape
against the manifest, and every read checks its rows are finite. Reading memory-maps
only the shards a batch needs and copies just its rows, so memory depends on the batch, not on the store.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import struct
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from jaxtyping import Float, Int
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.activations.gather import check_activations, gather_activations, gather_token_activations
from align_lens.adapter import HookedTransformer, Position
from align_lens.files import read_json

FORMAT = "align_lens.activation_store/2"  # /2: shard checksums, model fingerprint
MANIFEST = "manifest.json"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
_NUMPY = {"F32": np.float32, "F16": np.float16, "BF16": np.uint16}  # bf16 is read as uint16 and viewed


def content_hash(payload) -> str:
    """sha256 of a JSON-serialisable value (sorted keys): what a store was gathered from."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def labelled_hash(prompts: Sequence[str], labels: Int[Tensor, " n"], concepts: Sequence[str]) -> str:
    """The `ontology_hash` of a labelled store: its prompts, their labels and the concept names, in order."""
    return content_hash({"prompts": list(prompts), "labels": labels.tolist(), "concepts": list(concepts)})


def model_fingerprint(model: HookedTransformer) -> dict[str, str | None]:
    """What binds a store to the model that made it: a hash of every tensor of the state dict (names, dtypes,
    shapes and bytes) and a hash of the tokenizer's vocabulary (None without a tokenizer)."""
    h = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        t = value.detach().cpu().contiguous().reshape(-1)
        h.update(f"{key}|{value.dtype}|{tuple(value.shape)}".encode())
        h.update(t.view(torch.uint8).numpy())
    tokenizer = getattr(model, "tokenizer", None)
    vocab = tokenizer.get_vocab() if tokenizer is not None else None
    return {"model_weights": h.hexdigest()[:16], "tokenizer": content_hash(vocab)[:16] if vocab is not None else None}


def _position_name(position: Position) -> str | int:
    return position if isinstance(position, (str, int)) else getattr(position, "__qualname__", repr(position))


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    tmp.replace(path)


def _tensor_offsets(path: Path, name: str) -> tuple[int, str, list[int]]:
    """Byte offset, safetensors dtype and shape of tensor `name` in a safetensors file."""
    with open(path, "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(size))
    info = header[name]
    return 8 + size + info["data_offsets"][0], info["dtype"], info["shape"]


class ActivationStore:
    """A finished store, opened for reading. `take(idx)` reads rows by global index; `chunks` streams in order."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / MANIFEST).exists():
            raise FileNotFoundError(
                f"{self.path} is not an activation store (no {MANIFEST}); write one with write_store."
            )
        self.manifest = read_json(self.path / MANIFEST, "activation store manifest")
        if not isinstance(self.manifest, dict) or self.manifest.get("format") != FORMAT:
            found = self.manifest.get("format") if isinstance(self.manifest, dict) else None
            raise ValueError(
                f"{self.path}/{MANIFEST} has format {found!r}, expected {FORMAT!r}; gather the store again."
            )
        if not self.manifest["complete"]:
            raise ValueError(
                f"the gather into {self.path} did not finish ({len(self.manifest['shards'])} shards written); "
                "rerun the same gather to resume it."
            )
        self._files = [self.path / s["file"] for s in self.manifest["shards"]]
        self._layout = [_verified_shard(self.path, s, self.manifest["d_in"]) for s in self.manifest["shards"]]
        sizes = torch.tensor([s["rows"] for s in self.manifest["shards"]], dtype=torch.long)
        self._starts = torch.cat([torch.zeros(1, dtype=torch.long), sizes.cumsum(0)])
        self._labels: Tensor | None = None

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __repr__(self) -> str:
        m = self.manifest
        return f"ActivationStore({str(self.path)!r}, rows={len(self)}, d_in={m['d_in']}, hook={m['hook_name']!r}, shards={len(self._files)})"

    @property
    def d_in(self) -> int:
        return self.manifest["d_in"]

    @property
    def dtype(self) -> torch.dtype:
        return DTYPES[self.manifest["dtype"]]

    @property
    def concepts(self) -> list[str] | None:
        return self.manifest.get("concepts")

    @property
    def labels(self) -> Int[Tensor, " n"] | None:
        """Per-row concept labels of a labelled store (read once, 8 bytes a row), else None."""
        if self._labels is None and self.concepts is not None:
            self._labels = torch.cat([_read(f, "labels") for f in self._files])
        return self._labels

    def _rows(self, shard: int, local: np.ndarray | slice) -> Tensor:
        offset, dtype, shape = self._layout[shard]
        mm = np.memmap(self._files[shard], dtype=_NUMPY[dtype], mode="r", offset=offset, shape=tuple(shape))
        rows = torch.from_numpy(np.array(mm[local]))  # a copy; the mapping is dropped with `mm`
        rows = rows.view(torch.bfloat16) if dtype == "BF16" else rows
        if not torch.isfinite(rows).all():
            raise ValueError(
                f"activation store shard {self._files[shard]} holds NaN or inf values; the file is damaged: "
                "delete the store and gather it again."
            )
        return rows

    def take(self, idx: Int[Tensor, " b"]) -> Float[Tensor, "b d_in"]:
        """Rows `idx` (global indices, any order, repeats allowed) in the stored dtype, on the CPU."""
        idx = idx.cpu()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"row index out of range for a store of {len(self)} rows")
        shard = torch.searchsorted(self._starts, idx, right=True) - 1
        out = torch.empty(len(idx), self.d_in, dtype=self.dtype)
        for s in shard.unique().tolist():
            where = (shard == s).nonzero().squeeze(1)
            out[where] = self._rows(s, (idx[where] - self._starts[s]).numpy())
        return out

    def chunks(self, size: int) -> Iterator[Float[Tensor, "rows d_in"]]:
        """Rows [0, size), [size, 2·size), ... in store order: the same chunks as a tensor's `split(size)`,
        whatever the shard layout, so whole-set statistics sum in the same order."""
        for a in range(0, len(self), size):
            b = min(a + size, len(self))
            first, last = (int(s) for s in torch.searchsorted(self._starts, torch.tensor([a, b - 1]), right=True) - 1)
            parts = []
            for s in range(first, last + 1):
                lo, hi = max(a, int(self._starts[s])), min(b, int(self._starts[s + 1]))
                parts.append(self._rows(s, slice(lo - int(self._starts[s]), hi - int(self._starts[s]))))
            yield parts[0] if len(parts) == 1 else torch.cat(parts)

    def read_all(self) -> Float[Tensor, "n d_in"]:
        """Every row in one tensor (small stores only: this is the in-memory path)."""
        return torch.cat(list(self.chunks(1 << 16)))


def file_sha256(path: Path) -> str:
    """sha256 of a file's bytes, read in blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            h.update(block)
    return h.hexdigest()


def _verified_shard(folder: Path, entry: dict, d_in: int) -> tuple[int, str, list[int]]:
    """The activations' layout in shard `entry` of the manifest, after checking the file's checksum and that
    its shape is the recorded [rows, d_in]; errors name the shard file."""
    path = folder / entry["file"]
    if not path.is_file():
        raise FileNotFoundError(f"activation store shard {path} is missing; delete the store and gather it again.")
    if file_sha256(path) != entry.get("sha256"):
        raise ValueError(
            f"activation store shard {path} does not match the checksum in {MANIFEST} (truncated, damaged or "
            "changed after the gather); delete the store and gather it again."
        )
    layout = _tensor_offsets(path, "activations")
    if list(layout[2]) != [entry["rows"], d_in]:
        raise ValueError(
            f"activation store shard {path} holds activations of shape {layout[2]} but {MANIFEST} records "
            f"[{entry['rows']}, {d_in}]; the manifest was edited: delete the store and gather it again."
        )
    return layout


def _read(path: Path, name: str) -> Tensor:
    with safe_open(path, framework="pt") as f:
        return f.get_tensor(name)


class _Writer:
    """Appends shards to a store folder; resumes a gather whose `job` matches the manifest's."""

    def __init__(self, path: str | Path, job: dict, meta: dict):
        self.path = Path(path)
        manifest_path = self.path / MANIFEST
        if self.path.is_dir() and not manifest_path.exists() and any(self.path.iterdir()):
            raise FileExistsError(
                f"{self.path} is a non-empty folder but not an activation store (no {MANIFEST}); nothing was "
                "written: choose an empty or new folder for the store."
            )
        self.path.mkdir(parents=True, exist_ok=True)
        if manifest_path.exists():
            old = read_json(manifest_path, "activation store manifest")
            was = old.get("job", {}) if isinstance(old, dict) else {}
            differs = sorted(k for k in set(was) | set(job) if was.get(k) != job.get(k))
            if differs:
                raise ValueError(
                    f"{self.path} holds a store of another gather (differs in {differs}: "
                    + "; ".join(f"{k} (store: {was.get(k)!r}, now: {job.get(k)!r})" for k in differs)
                    + "); delete the folder or choose another path."
                )
            self.manifest = old
        else:
            self.manifest = {"format": FORMAT, "job": job, **meta, "shards": [], "complete": False}
            _write_json(manifest_path, self.manifest)

    @property
    def done(self) -> int:
        return len(self.manifest["shards"])

    def add(self, acts: Float[Tensor, "rows d_in"], labels: Int[Tensor, " rows"] | None, d_in: int) -> None:
        acts = check_activations(acts, d_in, f"activations for shard {self.done}")
        name = f"shard_{self.done:05d}.safetensors"
        tensors = {"activations": acts.to(DTYPES[self.manifest["dtype"]]).contiguous()}
        if labels is not None:
            tensors["labels"] = labels.to(torch.long).contiguous()
        save_file(tensors, self.path / f"{name}.tmp")
        (self.path / f"{name}.tmp").replace(self.path / name)
        entry = {"file": name, "rows": len(acts), "sha256": file_sha256(self.path / name)}
        self.manifest["shards"].append(entry)
        self.manifest["n_rows"] = sum(s["rows"] for s in self.manifest["shards"])
        _write_json(self.path / MANIFEST, self.manifest)

    def finish(self) -> ActivationStore:
        self.manifest["complete"] = True
        _write_json(self.path / MANIFEST, self.manifest)
        return ActivationStore(self.path)


def write_store(
    path: str | Path,
    model: HookedTransformer,
    prompts: Sequence[str],
    hook_name: str,
    position: Position | None = "last",
    labels: Int[Tensor, " n"] | None = None,
    concepts: Sequence[str] | None = None,
    prompts_per_shard: int = 4096,
    batch_size: int = 64,
    dtype: str = "float32",
    autocast: str | None = None,
    model_name: str | None = None,
    progress: bool = False,
) -> ActivationStore:
    """Gather activations at `hook_name` into a store at `path`, one shard per `prompts_per_shard` prompts.

    `position`: one row per prompt at that position (as `gather_activations`); None: every real token of each
    prompt (as `gather_token_activations`, unlabelled). `labels` + `concepts` make a labelled store (one label
    per prompt). `dtype`: what the shards hold ("float32", "bfloat16", "float16"). `autocast` ("bfloat16" or
    "float16") runs the model forward under torch.autocast on the model's device; None: full precision.
    Rerunning an interrupted call with the same arguments keeps the finished shards and continues.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if autocast not in (None, "bfloat16", "float16"):
        raise ValueError(f"autocast must be None, 'bfloat16' or 'float16', got {autocast!r}")
    if (labels is None) != (concepts is None):
        raise ValueError("a labelled store needs both labels= and concepts=; give neither for an unlabelled one.")
    if labels is not None and (position is None or len(labels) != len(prompts)):
        raise ValueError(f"{len(prompts)} prompts but {len(labels)} labels; give one label per prompt at one position.")
    if len(prompts) == 0:
        raise ValueError("no prompts given")
    if prompts_per_shard < 1:
        raise ValueError(f"prompts_per_shard must be >= 1, got {prompts_per_shard}")
    d_in = model.cfg.d_model
    name = model_name or getattr(model.cfg, "model_name", None)
    job = {
        "model_name": name,
        **model_fingerprint(model),
        "hook_name": hook_name,
        "position": "every_token" if position is None else _position_name(position),
        "dtype": dtype,
        "autocast": autocast,
        "prompts_per_shard": prompts_per_shard,
        "prompts_hash": content_hash(list(prompts)),
        "ontology_hash": labelled_hash(prompts, labels, concepts or []) if labels is not None else None,
    }
    meta = {k: job[k] for k in ("model_name", "hook_name", "position", "dtype", "autocast", "ontology_hash")}
    meta |= {"d_in": d_in, "n_rows": 0, "concepts": list(concepts) if concepts is not None else None}
    writer = _Writer(path, job, meta)
    if writer.manifest["complete"]:
        return ActivationStore(path)
    device_type = torch.device(model.cfg.device or "cpu").type
    starts = range(writer.done * prompts_per_shard, len(prompts), prompts_per_shard)
    for a in tqdm(starts, desc=f"store @ {hook_name}", disable=not progress):
        chunk = list(prompts[a : a + prompts_per_shard])
        ctx = torch.autocast(device_type, DTYPES[autocast]) if autocast else contextlib.nullcontext()
        with ctx:
            if position is None:
                acts = gather_token_activations(model, chunk, hook_name, batch_size)
            else:
                acts = gather_activations(model, chunk, hook_name, position, batch_size)
        d_in = acts.shape[1]
        writer.manifest["d_in"] = d_in
        writer.add(acts.float(), labels[a : a + prompts_per_shard] if labels is not None else None, d_in)
    return writer.finish()


def write_tensor_store(
    path: str | Path,
    acts: Float[Tensor, "n d_in"] | Iterable[Float[Tensor, "rows d_in"]],
    labels: Int[Tensor, " n"] | None = None,
    concepts: Sequence[str] | None = None,
    rows_per_shard: int = 65536,
    dtype: str = "float32",
    hook_name: str | None = None,
) -> ActivationStore:
    """Write activations already in memory as a store (e.g. to stream them in another process).

    `acts` may also be an iterable of [rows, d_in] tensors, one shard each (unlabelled only), so a store
    larger than memory can be written chunk by chunk.
    """
    if (labels is None) != (concepts is None):
        raise ValueError("a labelled store needs both labels= and concepts=; give neither for an unlabelled one.")
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if isinstance(acts, Tensor):
        check_activations(acts)
        ends = range(0, len(acts), rows_per_shard)
        chunks = (
            (acts[a : a + rows_per_shard], labels[a : a + rows_per_shard] if labels is not None else None) for a in ends
        )
    elif labels is not None:
        raise ValueError("labels= needs acts as one tensor (the labels are split into shards with it).")
    else:
        chunks = ((chunk, None) for chunk in acts)
    meta = {"model_name": None, "hook_name": hook_name, "position": None, "dtype": dtype, "autocast": None}
    meta |= {"ontology_hash": None, "d_in": None, "n_rows": 0, "concepts": concepts and list(concepts)}
    writer = _Writer(path, {"from_tensor": True, "dtype": dtype}, meta)
    if writer.done:
        raise FileExistsError(f"{path} already holds a store; delete it or choose another path.")
    for chunk, chunk_labels in chunks:
        writer.manifest["d_in"] = writer.manifest["d_in"] or chunk.shape[1]
        writer.add(chunk, chunk_labels, writer.manifest["d_in"])
    if not writer.done:
        raise ValueError("no rows given; a store needs at least one row.")
    return writer.finish()


def write_ontology_store(
    path: str | Path, model: HookedTransformer, ontology, hook_name: str, split: str = "train", **kwargs
):
    """A labelled store of `ontology`'s `split` prompts (what `align(..., activations=store)` reads)."""
    labels = ontology.labels(split)
    return write_store(
        path, model, ontology.prompts(split), hook_name, labels=labels, concepts=ontology.names, **kwargs
    )
