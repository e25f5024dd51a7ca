"""Stage 2's objective: the unweighted loss terms of one batch (`stage2_terms`), and the same as a module
(`Stage2Objective`, what DistributedDataParallel wraps and `torch.compile` compiles)."""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Float, Int
from torch import Tensor, nn

from align_lens.saes.aligned import AlignedSAE
from align_lens.training import losses


def stage2_terms(
    aligned: AlignedSAE,
    x: Float[Tensor, "b d_in"],
    labels: Int[Tensor, " n"],
    binding: str = "ce",
    variance: float = 1.0,
    heads: losses.ValueHeads | None = None,
    answers: Int[Tensor, " n"] | None = None,
    decorrelation: Callable[[Tensor, Tensor], Tensor] = losses.decorrelation_loss,
) -> dict[str, Tensor]:
    """Unweighted loss terms for one batch: the first len(labels) rows of `x` are labelled,
    the rest unlabelled."""
    n, nf = len(labels), aligned.cfg.n_free
    z, pre = aligned.encode_with_hidden_pre(x)
    x_hat = aligned.decode(z)
    # Split each [batch, d_sae] tensor once and slice only the small parts: in backward, every slice of a
    # big tensor costs a zero-filled buffer of its full size (profiled: ~12 % of a step at 16k latents).
    z_free, z_slots = z.split([nf, z.shape[-1] - nf], dim=-1)
    pre_slots = pre[:, nf:]
    zero = x.new_zeros(())
    return {
        "reconstruction": losses.reconstruction_loss(x, x_hat) / variance,
        "sparsity": aligned.free_sparsity_loss(z, pre) / variance,
        "binding": losses.binding_loss(pre_slots[:n], labels, binding),
        "decorrelation": decorrelation(z_slots[:n].detach(), z_free[:n]),
        "value": heads.loss(x_hat[:n], labels, answers) if heads is not None and answers is not None else zero,
        "silence": losses.silence_loss(z_slots[n:]) if len(x) > n else zero,
    }


class Stage2Objective(nn.Module):
    """`stage2_terms` as a module: what DistributedDataParallel wraps under data parallelism."""

    def __init__(self, aligned: AlignedSAE, heads: losses.ValueHeads | None, **settings):
        super().__init__()
        self.aligned, self.heads, self.settings = aligned, heads, settings

    def forward(self, x: Tensor, labels: Tensor, answers: Tensor | None = None) -> dict[str, Tensor]:
        return stage2_terms(self.aligned, x, labels, heads=self.heads, answers=answers, **self.settings)
