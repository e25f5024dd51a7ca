"""Checks that make training refuse to start on settings that cannot train, and refuse to return a result
that did not train (no steps, non-finite weights, reconstruction blown up)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from align_lens.training.config import AlignConfig, LossWeights, OptimiserConfig, Runtime, Stage1Config

FLOAT_DTYPES = ("float32", "float64", "float16", "bfloat16")


def integer(name: str, value: Any, minimum: int, hint: str = "") -> int:
    """`value` if it is an int ≥ `minimum` (bools refused); else ValueError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer ≥ {minimum}, got {value!r}{'; ' + hint if hint else ''}")
    return value


def number(name: str, value: Any, low: float = 0.0, high: float = math.inf, open_low: bool = False) -> float:
    """`value` if it is a finite real in [low, high] ((low, high] when `open_low`); else ValueError."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > low if open_low else value >= low) and value <= high
    if not ok:
        span = f"{'(' if open_low else '['}{low:g}, {high:g}]"
        raise ValueError(f"{name} must be a finite number in {span}, got {value!r}")
    return float(value)


def learning_rate(name: str, value: Any) -> float:
    return number(name, value, 0.0, 1.0, open_low=True)


def choice(name: str, value: Any, allowed: Sequence[Any]) -> Any:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def dtype(name: str) -> torch.dtype:
    """The torch floating dtype called `name` (e.g. "float32")."""
    choice("dtype", name, FLOAT_DTYPES)
    return getattr(torch, name)


def _config(config: Any, cls: type, example: str) -> None:
    if not isinstance(config, cls):
        raise TypeError(f"expected a {cls.__name__}, got {type(config).__name__}; pass e.g. {example}")


def check_runtime(config: Any, owner: str) -> None:
    _config(config.runtime, Runtime, f"{owner}(runtime=Runtime(device='cuda'))")
    integer(f"{owner}.runtime.seed", config.runtime.seed, 0)
    if config.runtime.threads is not None:
        integer(f"{owner}.runtime.threads", config.runtime.threads, 1, "or None to leave torch's setting")


def check_stage1_config(config: Any) -> None:
    """Refuse Stage1Config settings under which Stage 1 would not train."""
    _config(config, Stage1Config, "pretrain_sae(acts, Stage1Config(d_sae=4096, k=32))")
    choice("Stage1Config.architecture", config.architecture, ("topk", "standard", "jumprelu"))
    integer("Stage1Config.d_sae", config.d_sae, 1)
    if config.architecture == "topk":
        integer("Stage1Config.k", config.k, 1, "k is the number of active latents")
        if config.k > config.d_sae:
            raise ValueError(
                f"k={config.k} is larger than d_sae={config.d_sae}; a TopK SAE keeps k of its d_sae latents."
            )
    integer("Stage1Config.steps", config.steps, 1)
    integer("Stage1Config.batch_size", config.batch_size, 1)
    integer("Stage1Config.n_checkpoints", config.n_checkpoints, 0)
    integer("Stage1Config.dead_feature_window", config.dead_feature_window, 1)
    learning_rate("Stage1Config.lr", config.lr)
    number("Stage1Config.aux_loss_coefficient", config.aux_loss_coefficient)
    if config.sparsity_coefficient is not None:
        number("Stage1Config.sparsity_coefficient", config.sparsity_coefficient)
    choice("Stage1Config.init_b_dec", config.init_b_dec, ("zeros", "mean"))
    check_runtime(config, "Stage1Config")


def check_align_config(config: Any) -> None:
    """Refuse AlignConfig settings under which Stage 2 would not train (or never stop)."""
    _config(config, AlignConfig, "align(sae, ontology, config=AlignConfig(epochs=10))")
    _config(config.weights, LossWeights, "AlignConfig(weights=LossWeights(binding=2.0))")
    _config(config.optimiser, OptimiserConfig, "AlignConfig(optimiser=OptimiserConfig(lr=3e-3))")
    integer("AlignConfig.epochs", config.epochs, 1)
    if config.steps is not None:
        integer("AlignConfig.steps", config.steps, 1, "or None to use epochs")
    integer("AlignConfig.batch_size", config.batch_size, 2, "a step needs at least two labelled rows")
    integer("AlignConfig.unlabelled_batch_size", config.unlabelled_batch_size, 1)
    integer("AlignConfig.gather_batch_size", config.gather_batch_size, 1)
    integer("AlignConfig.interchange_batch_size", config.interchange_batch_size, 1)
    if config.patience is not None:
        integer("AlignConfig.patience", config.patience, 1, "or None to never stop early")
    opt = config.optimiser
    integer("AlignConfig.optimiser.warmup_steps", opt.warmup_steps, 0)
    learning_rate("AlignConfig.optimiser.lr", opt.lr)
    number("AlignConfig.optimiser.weight_decay", opt.weight_decay)
    choice("AlignConfig.optimiser.lr_schedule", opt.lr_schedule, ("constant", "cosine"))
    for term in ("reconstruction", "binding", "decorrelation", "value", "silence", "interchange"):
        number(f"AlignConfig.weights.{term}", getattr(config.weights, term))
    if config.weights.sparsity is not None:
        number("AlignConfig.weights.sparsity", config.weights.sparsity)
    choice("AlignConfig.binding", config.binding, ("auto", "ce", "mse_onehot"))
    choice("AlignConfig.init", config.init, ("lda", "diffmean", "random"))
    dtype(config.dtype)
    check_runtime(config, "AlignConfig")


def check_hook(config, trained_at: str | None) -> str | None:
    """The hook to align at; refuses one other than the SAE's own unless `config.allow_hook_change`."""
    if config.hook_name and trained_at and config.hook_name != trained_at and not config.allow_hook_change:
        raise ValueError(
            f"the SAE was trained at {trained_at!r} but AlignConfig.hook_name is {config.hook_name!r}; its latents "
            "would be relabelled on activations they never saw. Use an SAE trained at that hook, or pass "
            "AlignConfig(allow_hook_change=True) if this is intended."
        )
    return config.hook_name or trained_at


def check_labels(labels: Any, n_rows: int, n_concepts: int) -> Tensor:
    """`labels` as a long tensor if it is one integer concept index per row; else ValueError."""
    labels = torch.as_tensor(labels)
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be integer concept indices, got dtype {labels.dtype}")
    if labels.ndim != 1 or len(labels) != n_rows:
        raise ValueError(f"{n_rows} activations but labels of shape {tuple(labels.shape)}; give one label per row.")
    if n_rows and (labels.min() < 0 or labels.max() >= n_concepts):
        bad = labels[(labels < 0) | (labels >= n_concepts)][0].item()
        raise ValueError(f"label {bad} is outside the {n_concepts} concepts (valid: 0..{n_concepts - 1}).")
    return labels.long()


def check_rows(acts: Tensor, what: str, minimum: int = 2) -> None:
    """Refuse fewer than `minimum` rows or activations with zero variance (nothing to learn)."""
    if len(acts) < minimum:
        raise ValueError(f"{what}: {len(acts)} rows; at least {minimum} are needed to train.")
    if float(acts.float().var(0).sum()) == 0.0:
        raise ValueError(
            f"{what} are constant (zero variance over {len(acts)} rows); gather them at a hook that varies "
            "with the input, e.g. a residual stream after the first block."
        )


def check_finite_weights(module: torch.nn.Module, what: str) -> None:
    bad = [n for n, p in module.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise FloatingPointError(f"{what} has non-finite weights in {bad}; lower the learning rate.")


def check_trained(module: torch.nn.Module, steps: int, fvu_start: float, fvu_end: float, what: str) -> None:
    """Refuse a result with no steps, non-finite weights, or a reconstruction that blew up.

    `fvu_*` are fractions of variance unexplained; "blew up" means above 1 (worse than the mean) and more than
    ten times the start.
    """
    if steps <= 0:
        raise RuntimeError(f"{what} ran 0 training steps; raise steps/epochs or give more rows than the batch size.")
    check_finite_weights(module, what)
    if not math.isfinite(fvu_end) or (fvu_end > 1.0 and fvu_end > 10 * fvu_start):
        raise FloatingPointError(
            f"{what} diverged: the fraction of variance unexplained went from {fvu_start:.4g} to {fvu_end:.4g}; "
            "lower the learning rate."
        )
