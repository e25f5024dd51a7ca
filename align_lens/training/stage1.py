"""Stage 1 of AlignSAE: an ordinary SAE trained with SAELens' own trainer on cached activations."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float
from sae_lens import SAE, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor

from align_lens.activations.gather import check_activations


def _batches(acts: Tensor, batch_size: int, seed: int) -> Iterator[Tensor]:
    """Endless shuffled full batches; the order depends only on `seed`."""
    gen = torch.Generator().manual_seed(seed)
    while True:
        for idx in torch.randperm(len(acts), generator=gen).split(batch_size):
            if len(idx) == batch_size:
                yield acts[idx]


def _training_sae(architecture: str, d_in: int, d_sae: int, k: int, sparsity_coefficient: float | None, device: str):
    if architecture == "topk":
        return TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, device=device))
    if architecture == "standard":
        coef = 1.0 if sparsity_coefficient is None else sparsity_coefficient
        return StandardTrainingSAE(
            StandardTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l1_coefficient=coef, device=device)
        )
    if architecture == "jumprelu":
        coef = 1.0 if sparsity_coefficient is None else sparsity_coefficient
        return JumpReLUTrainingSAE(
            JumpReLUTrainingSAEConfig(d_in=d_in, d_sae=d_sae, l0_coefficient=coef, device=device)
        )
    raise ValueError(f"architecture must be 'topk', 'standard' or 'jumprelu', got {architecture!r}")


def _latest_checkpoint(path: Path) -> Path | None:
    found = sorted(path.glob("*/trainer_state.pt"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else None


def pretrain_sae(
    activations: Float[Tensor, "n d_in"],
    d_sae: int,
    architecture: Literal["topk", "standard", "jumprelu"] = "topk",
    k: int = 16,
    sparsity_coefficient: float | None = None,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    hook_name: str | None = None,
    model_name: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
    n_checkpoints: int = 0,
) -> SAE:
    """Train a `d_sae`-latent SAE on `activations` with `sae_lens.SAETrainer`; returns the inference SAE.

    With `checkpoint_dir` and `n_checkpoints > 0`, an interrupted run resumes from its latest checkpoint.
    """
    check_activations(activations)
    if len(activations) < batch_size:
        raise ValueError(f"only {len(activations)} activations for batch_size={batch_size}; lower batch_size.")
    torch.manual_seed(seed)
    sae = _training_sae(architecture, activations.shape[1], d_sae, k, sparsity_coefficient, device)
    sae.cfg.metadata.hook_name = hook_name
    sae.cfg.metadata.model_name = model_name
    cfg = SAETrainerConfig(
        total_training_samples=steps * batch_size,
        train_batch_size_samples=batch_size,
        lr=lr,
        lr_end=lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=min(100, steps // 10),
        lr_decay_steps=steps - min(100, steps // 10),
        device=device,
        n_checkpoints=n_checkpoints if checkpoint_dir else 0,
        checkpoint_path=str(checkpoint_dir) if checkpoint_dir else None,
        logger=LoggingConfig(log_to_wandb=False),
    )
    resume = _latest_checkpoint(Path(checkpoint_dir)) if checkpoint_dir else None
    if resume is not None:
        sae.load_weights_from_checkpoint(resume)
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))
    if resume is not None:
        trainer.load_trainer_state(resume)
    trainer.data_provider = _batches(activations.to(device), batch_size, seed + trainer.n_training_steps)
    trainer.fit()
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=device)
