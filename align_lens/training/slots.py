"""Stage 2's concept slots: their initialisation from the labelled activations, and freezing the pretrained
dictionary around them."""

from __future__ import annotations

import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.saes.aligned import AlignedSAE


@torch.no_grad()
def init_concept_slots(aligned: AlignedSAE, acts: Float[Tensor, "n d"], labels: Int[Tensor, " n"], how: str) -> None:
    """Point each slot at its concept.

    "lda" (default): encoder direction Σ⁻¹(μ_c − μ̄) with Σ the pooled within-concept covariance
    (ridge 1e-3·tr Σ/d); "diffmean": direction μ_c − μ̄. Either way the column is scaled so the
    concept's own examples read ≈1 and the others ≈-1 before the ReLU, and the decoder row is
    μ_c − μ̄ (what the concept adds on average). "random": small random slots.
    """
    nf, nc, d = aligned.cfg.n_free, aligned.cfg.n_concepts, aligned.cfg.d_in
    if how == "random":
        aligned.W_enc[:, nf:] = torch.randn_like(aligned.W_enc[:, nf:]) * d**-0.5
        aligned.W_dec[nf:] = torch.randn_like(aligned.W_dec[nf:]) * 0.01
        return
    if how not in ("lda", "diffmean"):
        raise ValueError(f"init must be 'lda', 'diffmean' or 'random', got {how!r}")
    sae_in = acts - aligned.b_dec * aligned.cfg.apply_b_dec_to_input
    means = torch.stack([acts[labels == c].mean(0) for c in range(nc)])
    diffs = means - means.mean(0)
    directions = diffs
    if how == "lda":
        centred = (acts - means[labels]).double()
        cov = centred.T @ centred / len(acts)
        cov += torch.eye(d, dtype=cov.dtype, device=cov.device) * (1e-3 * cov.trace() / d).clamp_min(1e-8)
        directions = torch.linalg.solve(cov, diffs.double().T).T.to(acts.dtype)
    for c in range(nc):
        u = directions[c] / directions[c].norm().clamp_min(1e-8)
        p = sae_in @ u
        on, off = p[labels == c].mean(), p[labels != c].mean()
        gap = (on - off).clamp_min(1e-6)
        aligned.W_enc[:, nf + c] = 2 * u / gap
        aligned.b_enc[nf + c] = -(on + off) / gap
        aligned.W_dec[nf + c] = diffs[c]


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
