"""Data-parallel Stage 2: each process computes its share of every global batch; DistributedDataParallel
averages the gradients (gloo on CPU, nccl on GPU).

Every process draws the same global permutation from the same seed and takes a contiguous share of each
batch, so the global batch — and with it the result — does not depend on the number of processes (up to
float summation order). Row-mean loss terms are rescaled by (local rows × world / global rows) so DDP's
gradient average equals the gradient of the global mean; the decorrelation term, a correlation over the
batch, is computed from all-reduced batch statistics. Only rank 0 writes checkpoints and the result.

Run with torchrun (one process per device):
    torchrun --nproc_per_node 2 -m align_lens.training.distributed \\
        --sae STAGE1_DIR --ontology onto.json --store LABELLED_STORE [--unlabelled TOKEN_STORE] --out ALIGNED_DIR
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import replace

import torch
import torch.distributed as dist
from jaxtyping import Float
from torch import Tensor, nn

from align_lens.training.replica import Replica


class _SumOverProcesses(torch.autograd.Function):
    """All-reduce (sum) whose backward all-reduces the gradient: each process's rows get the gradient of
    every process's copy of the loss, which DDP's average then brings back to one copy's worth."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out = x.clone()
        dist.all_reduce(out)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def global_decorrelation_loss(
    z_concept: Float[Tensor, "b c"], z_free: Float[Tensor, "b f"], eps: float = 1e-6
) -> Tensor:
    """`losses.decorrelation_loss` over the union of every process's rows (the global batch).

    Column sums, sums of squares and the [c, f] cross products are all-reduced; the free side goes through
    an autograd-aware all-reduce so its gradient reaches every process's rows. The concept side must be
    detached (as `align` passes it): its statistics are reduced without a gradient.
    """
    c = z_concept.shape[1]
    stats = torch.cat([z_free.new_tensor([len(z_concept)]), z_concept.sum(0), z_concept.pow(2).sum(0)])
    dist.all_reduce(stats)
    n, mean_c = stats[0], stats[1 : 1 + c] / stats[0]
    std_c = ((stats[1 + c :] / n - mean_c.pow(2)).clamp_min(0) + eps).sqrt()
    z_hat = (z_concept - mean_c) / std_c
    prod = torch.cat([z_hat, z_free.new_ones(len(z_free), 1)], dim=1).T @ z_free  # [c + 1, f], as one process
    squares = torch.linalg.vector_norm(z_free, dim=0, keepdim=True).pow(2)
    free = _SumOverProcesses.apply(torch.cat([prod, squares]))
    mean_f = free[c] / n
    std_f = ((free[c + 1] / n - mean_f.pow(2)).clamp_min(0) + eps).sqrt()
    return (free[:c] / (n * std_f)).pow(2).sum()


ROWS_OF_TERM = {"reconstruction": 1, "sparsity": 1, "silence": 2, "value": 3}  # others: means over labelled rows


class DataParallel(Replica):
    """This process's part in data-parallel Stage 2; needs an initialised default process group."""

    decorrelation = staticmethod(global_decorrelation_loss)

    def __init__(self, device: str | torch.device = "cpu"):
        if not dist.is_initialized():
            raise RuntimeError("DataParallel needs torch.distributed initialised; launch with torchrun (see init()).")
        self.rank, self.world, self.device = dist.get_rank(), dist.get_world_size(), torch.device(device)

    def wrap(self, objective: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(objective, device_ids=ids)

    def rescale(self, terms: dict[str, Tensor], n_labelled: int, n_rows: int, n_answers: int) -> dict[str, Tensor]:
        local = [n_labelled, n_rows, n_rows - n_labelled, n_answers]
        total = torch.tensor(local, dtype=torch.float64, device=self.device)
        dist.all_reduce(total)
        total, out = total.tolist(), {}
        for name, v in terms.items():
            if name == "decorrelation":  # already the global value on every process
                out[name] = v
                continue
            i = ROWS_OF_TERM.get(name, 0)
            # a process holding no rows of a kind has a NaN mean (empty batch); it contributes 0
            out[name] = v * (local[i] * self.world / total[i]) if local[i] else torch.nan_to_num(v * 0)
        return out

    def record(self, values: dict[str, Tensor]) -> dict[str, list[float]]:
        stacked = torch.stack([v.detach().to(torch.float64) for v in values.values()])
        dist.all_reduce(stacked)
        return dict(zip(values, (stacked / self.world).tolist()))


def init(device: str = "auto") -> str:
    """Initialise torch.distributed from torchrun's environment; returns this process's device."""
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if device == "auto":
        device = f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda"):
        torch.cuda.set_device(torch.device(device))
    dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return device


def main(argv: list[str] | None = None) -> None:
    """torchrun entry: align a saved SAE from stores; rank 0 saves the aligned SAE to --out."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sae", required=True, help="Stage-1 SAE folder (SAE.load_from_disk)")
    ap.add_argument("--ontology", required=True, help=".jsonl/.csv/.json ontology the labelled store was gathered for")
    ap.add_argument("--store", required=True, help="labelled store (activations.store.write_ontology_store)")
    ap.add_argument("--unlabelled", default=None, help="unlabelled store, streamed for reconstruction and silence")
    ap.add_argument("--out", required=True, help="folder for the aligned SAE (written by rank 0)")
    ap.add_argument(
        "--config",
        default="{}",
        help='AlignConfig fields as JSON (blocks nested), e.g. \'{"steps": 500, "optimiser": {"lr": 3e-3}}\'',
    )
    ap.add_argument("--device", default="auto", help="auto: cuda:LOCAL_RANK when CUDA is available, else cpu")
    args = ap.parse_args(argv)
    device = init(args.device)
    try:
        from sae_lens import SAE

        import align_lens  # noqa: F401  (registers the "aligned" architecture)
        from align_lens.activations.store import ActivationStore
        from align_lens.ontology import Ontology
        from align_lens.training.config import AlignConfig, config_from_dict
        from align_lens.training.stage2 import align

        parallel = DataParallel(device)
        config = config_from_dict(AlignConfig, json.loads(args.config))
        config = replace(config, runtime=replace(config.runtime, device=device, progress=parallel.writer))
        aligned = align(
            SAE.load_from_disk(args.sae, device=device),
            Ontology.load(args.ontology),
            activations=ActivationStore(args.store),
            unlabelled=ActivationStore(args.unlabelled) if args.unlabelled else None,
            config=config,
            parallel=parallel,
        )
        if parallel.writer:
            aligned.save_model(args.out)
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
