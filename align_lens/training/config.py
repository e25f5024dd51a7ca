"""Stage-2 settings (`AlignConfig`) and the per-step loss record (`AlignHistory`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

TERMS = ("reconstruction", "sparsity", "binding", "decorrelation", "value", "silence")


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
