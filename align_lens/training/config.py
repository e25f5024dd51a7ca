"""Stage-2 settings (`AlignConfig`), the per-step loss record (`AlignHistory`) and its device-side buffer
(`PendingTerms`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

TERMS = ("reconstruction", "sparsity", "binding", "decorrelation", "value", "silence")
LOG_EVERY = 25  # steps between reads of the loss terms from the device (a read waits for the device)


@dataclass
class AlignConfig:
    """Everything Stage 2 needs besides the SAE and the ontology. Weights of 0 disable a term."""

    hook_name: str | None = None  # default: sae.cfg.metadata.hook_name
    position: str | int = "last"  # token whose activation carries the concept
    binding: Literal["ce", "mse_onehot"] = "mse_onehot"  # measured better for swaps than "ce" (docs/results.md)
    reconstruction_weight: float = 1.0
    sparsity_weight: float | None = None  # None: the SAE's own training coefficient, else 1.0
    binding_weight: float = 1.0
    decorrelation_weight: float = 0.01
    value_weight: float = 0.0
    silence_weight: float = 0.3
    init: Literal["lda", "diffmean", "random"] = "lda"
    train_free: bool = True  # False: freeze the pretrained dictionary, train only the slots
    epochs: int = 20
    steps: int | None = None  # overrides epochs
    batch_size: int = 256
    unlabelled_batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 0.0
    patience: int | None = 5  # epochs without 0.1% improvement before stopping; None: never
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    gather_batch_size: int = 128
    progress: bool = True
    checkpoint_dir: str | None = None  # save after every epoch; a rerun with the same settings resumes
    allow_hook_change: bool = False  # True: align at hook_name although the SAE was trained at another hook
    interchange_weight: float = 0.0  # > 0: causal term of `training.interchange` (needs model=); 0 = off
    interchange_batch_size: int = 32  # swap trials per step for that term
    compile: bool = False  # torch.compile the loss terms: faster steps on a GPU after ~10-20 s of compiling


@dataclass
class AlignHistory:
    """Per-step loss terms (unweighted) and the weighted total. Reconstruction and sparsity are
    divided by the activation variance (reconstruction is then the fraction of variance unexplained)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def series(self, term: str) -> list[float]:
        return [s[term] for s in self.steps]

    def plot(self):
        """A plotly figure of every loss term against the step (log scale)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for term in ("total", *TERMS):
            ys = self.series(term)
            if any(y != 0 for y in ys):
                fig.add_scatter(y=ys, name=term, mode="lines")
        fig.update_layout(title="Stage-2 losses", xaxis_title="step", yaxis_title="loss", yaxis_type="log")
        return fig


class PendingTerms:
    """Each step's loss terms, kept on the device until `flush` reads them back in one transfer.

    Reading the terms every step (`.item()`) makes the host wait for the device every step: on an H100 at 16k
    latents that was 1.7 ms of an 8 ms Stage-2 step. `flush` also checks the totals and raises on the first
    non-finite one, so a diverged run stops within LOG_EVERY steps and before anything is saved.
    """

    def __init__(self) -> None:
        self.rows: list[Tensor] = []
        self.names: list[str] = []
        self.first_step = 0

    def add(self, step: int, terms: dict[str, Tensor]) -> None:
        if not self.rows:
            self.first_step, self.names = step, list(terms)
        self.rows.append(torch.stack([v.detach().float() for v in terms.values()]))

    def flush(self, record: Callable[[dict[str, Tensor]], dict[str, list[float]]]) -> list[dict[str, float]]:
        """The pending steps' records (`record`: name → one value per step, e.g. `Replica.record`), oldest first."""
        if not self.rows:
            return []
        values = record(dict(zip(self.names, torch.stack(self.rows, 1))))
        self.rows = []
        records = [dict(zip(values, row)) for row in zip(*values.values())]
        for i, r in enumerate(records):
            if not math.isfinite(r["total"]):
                step = self.first_step + i
                raise FloatingPointError(f"Stage-2 loss became {r['total']} at step {step}; lower AlignConfig.lr.")
        return records
