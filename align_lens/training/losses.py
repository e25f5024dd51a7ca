"""Stage-2 loss terms of AlignSAE. Each returns a scalar; weights are applied by the caller."""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn


def reconstruction_loss(x: Float[Tensor, "b d"], x_hat: Float[Tensor, "b d"]) -> Tensor:
    """Squared error summed over features, mean over the batch (SAELens' convention)."""
    return (x_hat - x).pow(2).sum(-1).mean()


def binding_loss(pre_concept: Float[Tensor, "b c"], labels: Int[Tensor, " b"], kind: str = "ce") -> Tensor:
    """Binding over the concept slots, read before their ReLU so a silent true slot still gets a gradient.

    `"ce"`: cross-entropy with the slot pre-activations as logits (the paper's linear logits) plus a
    fixed zero logit for "no concept", so the true slot must be positive (active after its ReLU) to win.
    `"mse_onehot"`: squared error of the slot values to the one-hot label (official code); the true
    slot is compared through its pre-activation, the others through their ReLU.
    """
    if kind == "ce":
        return F.cross_entropy(F.pad(pre_concept, (0, 1)), labels)
    if kind == "mse_onehot":  # labels stay indices: the true slot's squared error is scattered in, no one-hot
        true = labels[:, None]
        errors = pre_concept.relu().pow(2).scatter(1, true, (pre_concept.gather(1, true) - 1).pow(2))
        return errors.mean()
    raise ValueError(f"binding loss must be 'ce' or 'mse_onehot', got {kind!r}")


def _standardise(z: Tensor, eps: float) -> Tensor:
    z = z - z.mean(0)
    return z / (z.pow(2).mean(0) + eps).sqrt()


SPARSE_MIN_SLOTS = 256  # below this many slots the [c, f] product is cheap and is always taken
SPARSE_MAX_DENSITY = 1 / 16  # active fraction of the slot activations up to which the Gram path is taken


def decorrelation_loss(z_concept: Float[Tensor, "b c"], z_free: Float[Tensor, "b f"], eps: float = 1e-6) -> Tensor:
    """‖corr(z_concept, z_free)‖²_F over the batch.

    With many slots and few of them active per row (a trained aligned SAE: about one) this is
    `sparse_decorrelation_loss`, whose cost does not grow with the number of slots; otherwise:

    Builds only the [c, f] cross-correlation block: O(b·f + c·f) memory, never f × f. The standardised
    concept columns sum to zero, so the free columns need no centring: corr = ẑ_cᵀ z_f / (b·σ_f). The cross
    products and the column sums come from one product [ẑ_c, 1]ᵀ z_f and the sums of squares from one norm,
    so z_f (the big [b, f] side) is read twice forward (profiled: 35 % less time than separate reductions).
    A latent that is constant over the batch has zero correlation with everything. `align` passes the
    concept side detached, so the term moves concept evidence out of the free latents and cannot be
    lowered by silencing the slots.
    """
    b, c = z_concept.shape
    if c >= SPARSE_MIN_SLOTS and int(torch.count_nonzero(z_concept)) <= SPARSE_MAX_DENSITY * z_concept.numel():
        return sparse_decorrelation_loss(z_concept, z_free, eps)
    prod = torch.cat([_standardise(z_concept, eps), z_concept.new_ones(b, 1)], dim=1).T @ z_free  # [c + 1, f]
    mean = prod[-1] / b
    std = ((torch.linalg.vector_norm(z_free, dim=0).pow(2) / b - mean.pow(2)).clamp_min(0) + eps).sqrt()
    return (prod[:-1] / (b * std)).pow(2).sum()


def sparse_decorrelation_loss(
    z_concept: Float[Tensor, "b c"], z_free: Float[Tensor, "b f"], eps: float = 1e-6
) -> Tensor:
    """`decorrelation_loss` through the batch's [b, b] Gram matrix of the slots: O(nnz(G)·f + b·f), not O(b·c·f).

    A standardised slot column sums to zero, so ẑ_cᵀ z_f = z_cᵀ z̃_f / σ_c with z̃_f the centred free column;
    Σ_c (z_cᵀ z̃_f / σ_c)² = z̃_fᵀ G z̃_f with G = Z D Zᵀ, D = diag(1/σ_c²). The slot activations are sparse
    (each row has about one active slot), so G is a sparse [b, b] matrix. Equal to the dense formula up to
    float summation order. The concept side must be detached (as `align` passes it).
    """
    b = z_concept.shape[0]
    scaled = (z_concept * (z_concept.var(0, unbiased=False) + eps).rsqrt()).to_sparse()
    with warnings.catch_warnings():  # torch converts the product to its (beta) CSR layout internally
        warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
        gram = torch.sparse.mm(scaled, scaled.t())
    mean = z_free.mean(0)
    centred = z_free - mean
    std = ((torch.linalg.vector_norm(z_free, dim=0).pow(2) / b - mean.pow(2)).clamp_min(0) + eps).sqrt()
    return (_GramQuadratic.apply(gram, centred) / (b * std).pow(2)).sum()


class _GramQuadratic(torch.autograd.Function):
    """Per column f, z_fᵀ G z_f for a constant symmetric sparse G; backward reuses G z (gradient 2 G z_f) instead of
    a second sparse product."""

    @staticmethod
    def forward(ctx, gram: Tensor, z: Tensor) -> Tensor:
        gz = torch.sparse.mm(gram, z)
        ctx.save_for_backward(gz)
        return (z * gz).sum(0)

    @staticmethod
    def backward(ctx, *grads: Tensor) -> tuple[None, Tensor]:
        (gz,) = ctx.saved_tensors
        return None, gz * (2 * grads[0])


def naive_decorrelation_loss(
    z_concept: Float[Tensor, "b c"], z_free: Float[Tensor, "b f"], eps: float = 1e-6
) -> Tensor:
    """Reference formulation through the full (c+f) × (c+f) correlation matrix (tests and benchmarks only)."""
    z = _standardise(torch.cat([z_concept, z_free], dim=-1), eps)
    corr = z.T @ z / z.shape[0]
    c = z_concept.shape[-1]
    return corr[:c, c:].pow(2).sum()


def silence_loss(z_concept: Float[Tensor, "b c"]) -> Tensor:
    """Total slot activation on rows that carry no concept (slots are nonnegative, so this is L1)."""
    return z_concept.sum(-1).mean()


class ValueHeads(nn.Module):
    """One linear head per concept, reading the SAE reconstruction x̂ (d_in) and predicting the
    answer's first token among the ontology's answer tokens. The head of the example's own concept
    is used, so the reconstruction must keep what the model needs to name that concept's answer."""

    def __init__(self, n_concepts: int, d_in: int, n_answers: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(n_concepts, d_in, n_answers))
        self.bias = nn.Parameter(torch.zeros(n_concepts, n_answers))
        nn.init.normal_(self.weight, std=d_in**-0.5)

    def forward(self, x_hat: Float[Tensor, "b d"], labels: Int[Tensor, " b"]) -> Float[Tensor, "b n_answers"]:
        every = torch.einsum("bd,cdv->bcv", x_hat, self.weight) + self.bias  # b·c·v, not b·d·v
        return every[torch.arange(len(labels), device=labels.device), labels]

    def loss(self, x_hat: Tensor, labels: Tensor, answers: Int[Tensor, " b"]) -> Tensor:
        keep = answers >= 0
        if not keep.any():
            return x_hat.new_zeros(())
        return F.cross_entropy(self(x_hat[keep], labels[keep]), answers[keep])
