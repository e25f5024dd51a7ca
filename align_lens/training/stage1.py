"""Stage 1 of AlignSAE: an ordinary SAE trained with SAELens' own trainer on cached activations."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
from typing import Literal
from unittest import mock

import torch
from jaxtyping import Float
from sae_lens import SAE, LoggingConfig
from sae_lens.config import SAETrainerConfig
from sae_lens.saes.jumprelu_sae import JumpReLUTrainingSAE, JumpReLUTrainingSAEConfig
from sae_lens.saes.standard_sae import StandardTrainingSAE, StandardTrainingSAEConfig
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
from sae_lens.training import sae_trainer
from sae_lens.training.sae_trainer import SAETrainer
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.activations.store import ActivationStore
from align_lens.training import checkpoint, data, validation


def _batches(source: data.Rows, batch_size: int, seed: int, device: str, skip: int = 0) -> Iterator[Tensor]:
    """Endless shuffled full batches from batch `skip` on; the order depends only on `seed`, not on whether
    the rows are in memory or in a store (a store is read batch by batch)."""
    gen = torch.Generator().manual_seed(seed)
    n = 0
    while True:
        for idx in torch.randperm(len(source), generator=gen).split(batch_size):
            if len(idx) == batch_size:
                n += 1
                if n > skip:
                    yield data.rows_of(source, idx, device, torch.float32)


def _training_sae(
    architecture: str, d_in: int, d_sae: int, k: int, sparsity_coefficient: float | None, device: str, aux: float
):
    if architecture == "topk":
        return TopKTrainingSAE(
            TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, aux_loss_coefficient=aux, device=device)
        )
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


FINGERPRINT = "align_lens_stage1.json"


def _latest_checkpoint(path: Path) -> Path | None:
    """The checkpoint folder with the most training samples (SAELens names them by that count)."""

    def samples(folder: Path) -> int:
        name = folder.name.removeprefix("final_")
        return int(name) if name.isdigit() else -1

    found = [p.parent for p in path.glob("*/trainer_state.pt")]
    return max(found, key=samples) if found else None


def _check_resume(path: Path, fingerprint: dict) -> Path | None:
    """The checkpoint to resume from `path`, after checking it was written by a run with `fingerprint`;
    a new run writes its fingerprint there."""
    latest, file = _latest_checkpoint(path), path / FINGERPRINT
    if file.exists():
        try:
            found = json.loads(file.read_text())
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read {file} ({e}); delete the checkpoint folder to start afresh.") from e
        checkpoint.check_fingerprint(found, fingerprint, path)
    elif latest is not None:
        raise ValueError(
            f"{path} holds SAELens checkpoints without {FINGERPRINT}, so what they were trained for is unknown; "
            "delete them or use another checkpoint_dir."
        )
    else:
        checkpoint.save_json(file, fingerprint)
    return latest


@torch.no_grad()
def _fvu(sae, x: Tensor) -> float:
    """Fraction of variance of `x` the SAE leaves unexplained."""
    return float((sae.decode(sae.encode(x)) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum())


def pretrain_sae(
    activations: Float[Tensor, "n d_in"] | ActivationStore,
    d_sae: int,
    architecture: Literal["topk", "standard", "jumprelu"] = "topk",
    k: int = 16,
    sparsity_coefficient: float | None = None,
    steps: int = 2000,
    batch_size: int = 1024,
    lr: float = 1e-3,
    aux_loss_coefficient: float = 1.0,
    dead_feature_window: int = 1000,
    init_b_dec: Literal["zeros", "mean"] = "zeros",
    hook_name: str | None = None,
    model_name: str | None = None,
    seed: int = 0,
    device: str = "cpu",
    checkpoint_dir: str | Path | None = None,
    n_checkpoints: int = 0,
    progress: bool = True,
) -> SAE:
    """Train a `d_sae`-latent SAE on `activations` with `sae_lens.SAETrainer`; returns the inference SAE.

    TopK: `aux_loss_coefficient` weighs SAELens' aux-k loss, which makes latents silent for more than
    `dead_feature_window` steps reconstruct the residual (keep the window well below `steps`, or it never acts).
    `init_b_dec="mean"` starts the decoder bias at the activations' mean (zeros: SAELens' default).
    With `checkpoint_dir` and `n_checkpoints > 0`, an interrupted run resumes from its latest checkpoint.
    `progress=False` hides SAELens' progress bar.
    `activations` may be an `ActivationStore`: its rows are then streamed batch by batch.
    """
    source = data.as_rows(activations, device=device)
    validation.choice("architecture", architecture, ("topk", "standard", "jumprelu"))
    validation.integer("d_sae", d_sae, 1)
    if architecture == "topk":
        validation.integer("k", k, 1, "k is the number of active latents")
        if k > d_sae:
            raise ValueError(f"k={k} is larger than d_sae={d_sae}; a TopK SAE keeps k of its d_sae latents.")
    validation.integer("steps", steps, 1)
    validation.integer("batch_size", batch_size, 1)
    validation.integer("n_checkpoints", n_checkpoints, 0)
    validation.learning_rate("lr", lr)
    if sparsity_coefficient is not None:
        validation.number("sparsity_coefficient", sparsity_coefficient)
    data.check_rows(source, "activations")
    if len(source) < batch_size:
        raise ValueError(f"only {len(source)} activations for batch_size={batch_size}; lower batch_size.")
    torch.manual_seed(seed)
    sae = _training_sae(architecture, source.d_in, d_sae, k, sparsity_coefficient, device, aux_loss_coefficient)
    if init_b_dec == "mean":
        with torch.no_grad():
            sae.b_dec.copy_(data.column_mean(source).to(sae.b_dec))
    elif init_b_dec != "zeros":
        raise ValueError(f"init_b_dec must be 'zeros' or 'mean', got {init_b_dec!r}")
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
        dead_feature_window=dead_feature_window,
        n_checkpoints=n_checkpoints if checkpoint_dir else 0,
        checkpoint_path=str(checkpoint_dir) if checkpoint_dir else None,
        logger=LoggingConfig(log_to_wandb=False),
    )
    fingerprint = {
        "architecture": architecture,
        "d_in": source.d_in,
        "d_sae": d_sae,
        "k": k if architecture == "topk" else None,
        "activations": data.source_hash(source),
        "settings": dict(
            steps=steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            sparsity_coefficient=sparsity_coefficient,
            aux_loss_coefficient=aux_loss_coefficient,
            dead_feature_window=dead_feature_window,
            init_b_dec=init_b_dec,
        ),
    }
    resume = _check_resume(Path(checkpoint_dir), fingerprint) if checkpoint_dir else None
    if resume is not None:
        sae.load_weights_from_checkpoint(resume)
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))
    if resume is not None:
        trainer.load_trainer_state(resume)
        # SAELens saves before counting the step it just took; the sample count is exact
        trainer.n_training_steps = trainer.n_training_samples // batch_size
    sample = data.rows_of(source, torch.arange(min(4096, len(source))), device, torch.float32)
    fvu_start = _fvu(sae, sample)
    trainer.data_provider = _batches(source, batch_size, seed, device, skip=trainer.n_training_steps)
    with mock.patch.object(sae_trainer, "tqdm", partial(tqdm, disable=not progress)):
        trainer.fit()
    validation.check_trained(sae, trainer.n_training_steps, fvu_start, _fvu(sae, sample), "Stage 1 (pretrain_sae)")
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=device)
