"""The trainers' settings: `Stage1Config` (Stage 1, SAELens' trainer) and `AlignConfig` (Stage 2), which share
one `Runtime` block (device, seed, progress bar, threads).

Like SAELens' runner config, each is one dataclass with the training knobs at top level and the rest in small
nested blocks: `AlignConfig(epochs=10, optimiser=OptimiserConfig(lr=3e-3), runtime=Runtime(progress=False))`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, is_dataclass, replace
from typing import Any, Literal, TypeVar, get_type_hints

import torch

C = TypeVar("C")


@dataclass
class Runtime:
    """Where and how a trainer runs; the same block in `Stage1Config` and `AlignConfig`."""

    device: str = "cpu"
    seed: int = 0
    progress: bool = True  # show a progress bar
    threads: int | None = None  # torch intra-op threads while training (restored after); None: leave as set

    @contextmanager
    def threads_applied(self) -> Iterator[None]:
        """Run the block with `threads` torch threads, then restore the previous number."""
        previous = torch.get_num_threads()
        if self.threads is not None:
            torch.set_num_threads(self.threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


@dataclass
class Stage1Config:
    """Every setting of `pretrain_sae` (Stage 1: an ordinary SAE trained with SAELens' `SAETrainer`).

    TopK: `aux_loss_coefficient` weighs SAELens' aux-k loss, which makes latents silent for more than
    `dead_feature_window` steps reconstruct the residual (keep the window well below `steps`, or it never acts).
    With `checkpoint_dir` and `n_checkpoints > 0`, an interrupted run resumes from its latest checkpoint.
    """

    d_sae: int
    architecture: Literal["topk", "standard", "jumprelu"] = "topk"
    k: int = 16  # TopK: active latents per row
    sparsity_coefficient: float | None = None  # standard / jumprelu: L1 / L0 coefficient (None: 1.0)
    steps: int = 2000
    batch_size: int = 1024
    lr: float = 1e-3
    aux_loss_coefficient: float = 1.0
    dead_feature_window: int = 1000
    init_b_dec: Literal["zeros", "mean"] = "zeros"  # "mean": start the decoder bias at the activations' mean
    hook_name: str | None = None  # recorded in the SAE's metadata
    model_name: str | None = None  # recorded in the SAE's metadata
    checkpoint_dir: str | None = None
    n_checkpoints: int = 0
    runtime: Runtime = field(default_factory=Runtime)


@dataclass
class LossWeights:
    """Weights of Stage 2's loss terms (`training.losses`); 0 disables a term."""

    reconstruction: float = 1.0
    sparsity: float | None = None  # None: the SAE's own training coefficient, else 1.0
    binding: float = 1.0
    decorrelation: float = 0.01
    value: float = 0.0
    silence: float = 0.3
    interchange: float = 0.0  # > 0: causal term of `training.interchange` (needs model=); 0 = off


@dataclass
class OptimiserConfig:
    """Stage 2's AdamW and its learning-rate schedule (linear warm-up, then constant or cosine to lr/10)."""

    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 0.0


CE_FROM_CONCEPTS = 200


def binding_for(binding: str, n_concepts: int) -> str:
    """The binding loss `AlignConfig.binding` names for an ontology of `n_concepts` concepts. "auto" is
    "mse_onehot" below `CE_FROM_CONCEPTS` concepts (measured better for swaps with 6–20 relations; the same binding
    as "ce" at 100 people) and "ce" from there on ("mse_onehot" loses binding with more concepts: 0.97 vs 1.00 at
    300 people, 0.75 vs 1.00 at 1,000; docs/results.md)."""
    if binding != "auto":
        return binding
    return "ce" if n_concepts >= CE_FROM_CONCEPTS else "mse_onehot"


@dataclass
class AlignConfig:
    """Everything Stage 2 needs besides the SAE and the ontology: what to train (top level), the loss
    `weights`, the `optimiser` and the `runtime`."""

    hook_name: str | None = None  # default: sae.cfg.metadata.hook_name
    position: str | int = "last"  # token whose activation carries the concept
    binding: Literal["auto", "ce", "mse_onehot"] = "auto"  # see `binding_for`
    init: Literal["lda", "diffmean", "random"] = "lda"
    train_free: bool = True  # False: freeze the pretrained dictionary, train only the slots
    epochs: int = 20
    steps: int | None = None  # overrides epochs
    batch_size: int = 256
    unlabelled_batch_size: int = 256
    interchange_batch_size: int = 32  # swap trials per step for the interchange term
    interchange_span: bool = False  # the interchange edit also over the answer tokens (the swaps' `span` edit)
    patience: int | None = 5  # epochs without 0.1% improvement before stopping; None: never
    dtype: str = "float32"
    gather_batch_size: int = 128
    checkpoint_dir: str | None = None  # save after every epoch; a rerun with the same settings resumes
    allow_hook_change: bool = False  # True: align at hook_name although the SAE was trained at another hook
    compile: bool = False  # torch.compile the loss terms: faster steps on a GPU after ~10-20 s of compiling
    weights: LossWeights = field(default_factory=LossWeights)
    optimiser: OptimiserConfig = field(default_factory=OptimiserConfig)
    runtime: Runtime = field(default_factory=Runtime)


def config_from_dict(cls: type[C], values: Mapping[str, Any]) -> C:
    """The config dataclass `cls` from a nested dict such as parsed JSON (a nested block is a dict too), e.g.
    `config_from_dict(AlignConfig, {"epochs": 4, "optimiser": {"lr": 3e-3}})`."""
    hints = get_type_hints(cls)
    return cls(
        **{
            k: config_from_dict(hints[k], v) if isinstance(v, Mapping) and is_dataclass(hints.get(k)) else v
            for k, v in values.items()
        }
    )


def with_values(config: C, changes: Mapping[str, Any]) -> C:
    """A copy of the config dataclass `config` with each field named in `changes` set; a dotted name sets a field
    of a nested block, e.g. `with_values(config, {"epochs": 4, "optimiser.lr": 3e-3, "runtime.seed": 1})`."""
    for name, value in changes.items():
        head, _, rest = name.partition(".")
        inner = with_values(getattr(config, head), {rest: value}) if rest else value
        config = replace(config, **{head: inner})  # pyright: ignore[reportArgumentType]  (a dataclass, as documented)
    return config
