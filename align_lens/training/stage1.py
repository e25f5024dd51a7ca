"""Stage 1 of AlignSAE: an ordinary SAE trained with SAELens' own trainer on cached activations."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path
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
from align_lens.training.config import Stage1Config


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


def pretrain_sae(activations: Float[Tensor, "n d_in"] | ActivationStore, config: Stage1Config) -> SAE:
    """Train a `config.d_sae`-latent SAE on `activations` with `sae_lens.SAETrainer`; returns the inference SAE.

    `activations` may be an `ActivationStore`: its rows are then streamed batch by batch. Every setting is in
    `config` (see `Stage1Config`); the same config and activations give the same weights.
    """
    validation.check_stage1_config(config)
    with config.runtime.threads_applied():
        return _pretrain(activations, config)


def _pretrain(activations: Float[Tensor, "n d_in"] | ActivationStore, config: Stage1Config) -> SAE:
    c, device, seed = config, config.runtime.device, config.runtime.seed
    source = data.as_rows(activations, device=device)
    data.check_rows(source, "activations")
    if len(source) < c.batch_size:
        raise ValueError(f"only {len(source)} activations for batch_size={c.batch_size}; lower batch_size.")
    torch.manual_seed(seed)
    sae = _training_sae(
        c.architecture, source.d_in, c.d_sae, c.k, c.sparsity_coefficient, device, c.aux_loss_coefficient
    )
    if c.init_b_dec == "mean":
        with torch.no_grad():
            sae.b_dec.copy_(data.column_mean(source).to(sae.b_dec))
    sae.cfg.metadata.hook_name = c.hook_name
    sae.cfg.metadata.model_name = c.model_name
    warm_up = min(100, c.steps // 10)
    cfg = SAETrainerConfig(
        total_training_samples=c.steps * c.batch_size,
        train_batch_size_samples=c.batch_size,
        lr=c.lr,
        lr_end=c.lr / 10,
        lr_scheduler_name="cosineannealing",
        lr_warm_up_steps=warm_up,
        lr_decay_steps=c.steps - warm_up,
        device=device,
        dead_feature_window=c.dead_feature_window,
        n_checkpoints=c.n_checkpoints if c.checkpoint_dir else 0,
        checkpoint_path=str(c.checkpoint_dir) if c.checkpoint_dir else None,
        logger=LoggingConfig(log_to_wandb=False),
    )
    # the metadata names (and k, but for TopK) do not change the weights; resuming under other ones is fine
    exclude = checkpoint.RUNTIME_ONLY | {"hook_name", "model_name"} | ({"k"} if c.architecture != "topk" else set())
    fingerprint = checkpoint.fingerprint(c, exclude, d_in=source.d_in, activations=data.source_hash(source))
    resume = _check_resume(Path(c.checkpoint_dir), fingerprint) if c.checkpoint_dir else None
    if resume is not None:
        sae.load_weights_from_checkpoint(resume)
    trainer = SAETrainer(cfg=cfg, sae=sae, data_provider=iter(()))
    if resume is not None:
        trainer.load_trainer_state(resume)
        # SAELens saves before counting the step it just took; the sample count is exact
        trainer.n_training_steps = trainer.n_training_samples // c.batch_size
    sample = data.rows_of(source, torch.arange(min(4096, len(source))), device, torch.float32)
    fvu_start = _fvu(sae, sample)
    trainer.data_provider = _batches(source, c.batch_size, seed, device, skip=trainer.n_training_steps)
    with mock.patch.object(sae_trainer, "tqdm", partial(tqdm, disable=not config.runtime.progress)):
        trainer.fit()
    validation.check_trained(sae, trainer.n_training_steps, fvu_start, _fvu(sae, sample), "Stage 1 (pretrain_sae)")
    with tempfile.TemporaryDirectory() as tmp:
        sae.save_inference_model(tmp)
        return SAE.load_from_disk(tmp, device=device)
