"""`AlignHistory`: Stage 2's per-step loss record, and its plot."""

from __future__ import annotations

from dataclasses import dataclass, field

TERMS = ("reconstruction", "sparsity", "binding", "decorrelation", "value", "silence")


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
