"""Where Stage-1 and Stage-2 rows come from: a tensor in memory or an ActivationStore on disk, behind one interface.

Both sources answer `len`, `d_in`, `labels`, `take(idx)` (rows by global index) and `chunks(size)` (rows in
order). Training draws a global permutation of row indices from its seeded generator and asks the source for
each batch's rows, so a store and a tensor holding the same rows give the same batches, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.activations.gather import check_activations
from align_lens.activations.store import ActivationStore, labelled_hash

CHUNK = 1 << 15  # rows per chunk for whole-set statistics; fixed so both sources sum in the same order


class TensorRows:
    """Rows held in memory (the small-set path)."""

    labels: Int[Tensor, " n"] | None = None

    def __init__(self, acts: Float[Tensor, "n d_in"]):
        self.acts = acts

    def __len__(self) -> int:
        return len(self.acts)

    @property
    def d_in(self) -> int:
        return self.acts.shape[1]

    def take(self, idx: Int[Tensor, " b"]) -> Float[Tensor, "b d_in"]:
        return self.acts[idx.to(self.acts.device)]

    def chunks(self, size: int) -> Iterator[Float[Tensor, "rows d_in"]]:
        yield from self.acts.split(size)


Rows = TensorRows | ActivationStore


def as_rows(
    source: Tensor | ActivationStore | str | Path,
    d_in: int | None = None,
    what: str = "activations",
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Rows:
    """A tensor (checked, moved to `device`/`dtype` once) or a store (a path opens one; its width is checked)."""
    if isinstance(source, (str, Path)):
        source = ActivationStore(source)
    if isinstance(source, ActivationStore):
        if d_in is not None and source.d_in != d_in:
            raise ValueError(
                f"{what}: the store at {source.path} holds d_in={source.d_in} rows but the SAE expects d_in={d_in}; "
                "gather it at the hook the SAE was trained on."
            )
        if len(source) == 0:
            raise ValueError(f"{what}: the store at {source.path} has no rows.")
        return source
    return TensorRows(check_activations(source, d_in, what).to(device, dtype))


def rows_of(source: Rows, idx: Int[Tensor, " b"], device, dtype: torch.dtype) -> Float[Tensor, "b d_in"]:
    """Rows `idx` of `source` on `device` in `dtype`."""
    return source.take(idx).to(device, dtype)


def total_variance(source: Rows) -> float:
    """Σ over features of the per-feature variance (unbiased), accumulated in float64 chunk by chunk."""
    n, total, squares = 0, torch.zeros((), dtype=torch.float64), torch.zeros((), dtype=torch.float64)
    for chunk in source.chunks(CHUNK):
        x = chunk.double()
        n += len(x)
        total = total + x.sum(0)
        squares = squares + x.pow(2).sum(0)
    variance = float(((squares - total.pow(2) / n) / (n - 1)).sum()) if n > 1 else 0.0
    if variance <= 0:
        raise ValueError(
            f"the activations are constant (zero variance over {n} rows); gather them at a hook that varies "
            "with the input, e.g. a residual stream after the first block."
        )
    return variance


def column_mean(source: Rows) -> Float[Tensor, " d_in"]:
    """Per-feature mean, accumulated in float64 chunk by chunk (returned as float32)."""
    n, total = 0, torch.zeros((), dtype=torch.float64)
    for chunk in source.chunks(CHUNK):
        n += len(chunk)
        total = total + chunk.double().sum(0)
    if n == 0:
        raise ValueError("no activation rows to average; gather some first.")
    return (total / n).float()


def source_hash(source: Rows) -> str:
    """What a checkpoint was trained on: a tensor's bytes, or a store's manifest (its job and shards)."""
    from align_lens.training import checkpoint

    if isinstance(source, TensorRows):
        return checkpoint.tensor_hash(source.acts)
    return checkpoint.json_hash({k: source.manifest[k] for k in ("job", "shards", "n_rows")})


def check_rows(source: Rows, what: str) -> None:
    """`validation.check_rows` for a tensor; for a store, at least 2 rows (constant rows show in the variance)."""
    from align_lens.training import validation

    if isinstance(source, TensorRows):
        validation.check_rows(source.acts, what)
    elif len(source) < 2:
        raise ValueError(f"{what}: {len(source)} rows; at least 2 are needed to train.")


def labels_for(source: Rows, ontology, labels: Int[Tensor, " n"] | None) -> Int[Tensor, " n"]:
    """The given labels, else a labelled store's own (checked against `ontology`), else the ontology's train labels."""
    if labels is not None or not isinstance(source, ActivationStore) or source.labels is None:
        return ontology.labels("train") if labels is None else labels
    if source.concepts != ontology.names:
        raise ValueError(
            f"the store at {source.path} was gathered for concepts {source.concepts}, the ontology has "
            f"{ontology.names}; gather it again for this ontology."
        )
    stored = source.manifest.get("ontology_hash")
    mine = labelled_hash(ontology.prompts("train"), ontology.labels("train"), ontology.names)
    if stored is not None and stored != mine:
        raise ValueError(
            f"the store at {source.path} holds other prompts or labels than this ontology's train split; "
            "gather it again with write_ontology_store."
        )
    return source.labels
