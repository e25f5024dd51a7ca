"""`Replica`: how Stage 2 runs its batches in one process; `distributed.DataParallel` overrides its hooks."""

from __future__ import annotations

from collections.abc import Callable

from jaxtyping import Int
from torch import Tensor, nn

from align_lens.training import losses


class Replica:
    """One process computing whole batches (the default): every hook is the identity."""

    rank, world = 0, 1
    decorrelation: Callable[[Tensor, Tensor], Tensor] = staticmethod(losses.decorrelation_loss)

    @property
    def writer(self) -> bool:
        """Whether this process writes checkpoints and results."""
        return self.rank == 0

    def local(self, idx: Int[Tensor, " b"]) -> Int[Tensor, " b_local"]:
        """This process's share of a global batch of row indices."""
        return idx.tensor_split(self.world)[self.rank]

    def wrap(self, objective: nn.Module) -> nn.Module:
        return objective

    def rescale(self, terms: dict[str, Tensor], n_labelled: int, n_rows: int, n_answers: int) -> dict[str, Tensor]:
        """Loss terms weighted so that averaging gradients over processes gives the global batch's gradient."""
        return terms

    def record(self, values: dict[str, Tensor]) -> dict[str, list[float]]:
        """Logged values (one tensor of steps per name), as global means under data parallelism."""
        return {k: v.tolist() for k, v in values.items()}
