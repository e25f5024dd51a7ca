"""Stage 2's concept slots: their initialisation from the labelled activations, and freezing the pretrained
dictionary around them."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.saes.aligned import AlignedSAE
from align_lens.training.data import CHUNK, Rows


@torch.no_grad()
def init_concept_slots(aligned: AlignedSAE, source: Rows, labels: Int[Tensor, " n"], how: str) -> None:
    """Point each slot at its concept, streaming over the labelled rows `source` chunk by chunk.

    "lda" (default): encoder direction Σ⁻¹(μ_c − μ̄) with Σ the pooled within-concept covariance
    (ridge 1e-3·tr Σ/d); "diffmean": direction μ_c − μ̄. Either way the column is scaled so the
    concept's own examples read ≈1 and the others ≈-1 before the ReLU, and the decoder row is
    μ_c − μ̄ (what the concept adds on average). "random": small random slots.
    Per-concept sums (one pass; a second for LDA's covariance) replace per-concept scans: O(n·d + c·d²).
    """
    nf, nc, d = aligned.cfg.n_free, aligned.cfg.n_concepts, aligned.cfg.d_in
    if how == "random":
        aligned.W_enc[:, nf:] = torch.randn_like(aligned.W_enc[:, nf:]) * d**-0.5
        aligned.W_dec[nf:] = torch.randn_like(aligned.W_dec[nf:]) * 0.01
        return
    if how not in ("lda", "diffmean"):
        raise ValueError(f"init must be 'lda', 'diffmean' or 'random', got {how!r}")
    dtype, device = aligned.W_enc.dtype, aligned.W_enc.device
    sums = torch.zeros(nc, d, dtype=torch.float64, device=device)
    for x, y in _labelled_chunks(source, labels, dtype, device):
        sums.index_add_(0, y, x.double())
    counts = torch.bincount(labels.to(device), minlength=nc).double()
    means = (sums / counts[:, None]).to(dtype)
    diffs = means - means.mean(0)
    directions = diffs
    if how == "lda":
        cov = torch.zeros(d, d, dtype=torch.float64, device=device)
        for x, y in _labelled_chunks(source, labels, dtype, device):
            centred = (x - means[y]).double()
            cov += centred.T @ centred
        cov /= len(labels)
        cov += torch.eye(d, dtype=cov.dtype, device=cov.device) * (1e-3 * cov.trace() / d).clamp_min(1e-8)
        directions = torch.linalg.solve(cov, diffs.double().T).T.to(dtype)
    units = directions / directions.norm(dim=1, keepdim=True).clamp_min(1e-8)
    shift = aligned.b_dec * aligned.cfg.apply_b_dec_to_input
    others = (sums.sum(0) - sums) / (len(labels) - counts)[:, None]  # mean of the rows of every other concept
    on = ((means - shift) * units).sum(1)  # mean reading of the concept's own rows
    off = ((others.to(dtype) - shift) * units).sum(1)
    gap = (on - off).clamp_min(1e-6)
    aligned.W_enc[:, nf:] = (2 * units / gap[:, None]).T
    aligned.b_enc[nf:] = -(on + off) / gap
    aligned.W_dec[nf:] = diffs


def _labelled_chunks(
    source: Rows, labels: Int[Tensor, " n"], dtype: torch.dtype, device
) -> Iterator[tuple[Float[Tensor, "rows d"], Int[Tensor, " rows"]]]:
    """(rows, their labels) of `source` in order, `data.CHUNK` rows at a time."""
    start = 0
    for chunk in source.chunks(CHUNK):
        yield chunk.to(device, dtype), labels[start : start + len(chunk)].to(device)
        start += len(chunk)


def freeze_pretrained(aligned: AlignedSAE) -> list:
    """Keep the free dictionary fixed: mask the gradients of its encoder columns and decoder rows.
    Returns the hook handles to remove after training."""
    nf = aligned.cfg.n_free
    col = torch.zeros(aligned.cfg.d_sae, dtype=aligned.dtype, device=aligned.device)
    col[nf:] = 1
    aligned.b_dec.requires_grad_(False)
    if aligned.cfg.base_architecture == "jumprelu":
        aligned.threshold.requires_grad_(False)
    return [
        aligned.W_enc.register_hook(lambda g: g * col),
        aligned.b_enc.register_hook(lambda g: g * col),
        aligned.W_dec.register_hook(lambda g: g * col[:, None]),
    ]
