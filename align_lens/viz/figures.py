"""Plotly figure builders for binding, training, swaps and layer sweeps. Each returns a `go.Figure`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import plotly.graph_objects as go

SCORER_LABELS = {"exact": "exact full answer", "first_token": "exact first token", "lenient": "lenient (paper)"}


def _as_dict(results) -> dict[str, Any]:
    if hasattr(results, "to_dict"):
        return results.to_dict()
    return dict(results)


def binding_heatmap(
    confusion,
    names: Sequence[str],
    normalize: bool = True,
    title: str = "Binding: true concept × argmax slot",
    slot_names: Sequence[str] | None = None,
) -> go.Figure:
    """Heatmap of a concept × slot confusion matrix (rows = true concept); rows normalised to rates by default.
    `confusion` may also be the dict returned by `evals.binding_metrics`."""
    if isinstance(confusion, Mapping):
        confusion = confusion["confusion"]
    m = np.asarray(confusion, dtype=float)
    if normalize:
        m = m / np.clip(m.sum(1, keepdims=True), 1, None)
    cols = list(slot_names or names)[: m.shape[1]]
    fig = go.Figure(
        go.Heatmap(
            z=m,
            x=cols,
            y=list(names),
            colorscale="Blues",
            zmin=0,
            zmax=1 if normalize else None,
            text=np.round(m, 2),
            texttemplate="%{text}",
            colorbar={"title": "rate" if normalize else "count"},
        )
    )
    fig.update_layout(title=title, xaxis_title="argmax slot", yaxis_title="true concept", yaxis_autorange="reversed")
    return fig


def loss_curves(
    history, terms: Sequence[str] | None = None, smooth: int = 1, title: str = "Stage-2 losses"
) -> go.Figure:
    """Loss terms against the step (log scale). `history` is an `AlignHistory` or a list of per-step dicts."""
    steps = history.steps if hasattr(history, "steps") else list(history)
    if not steps:
        raise ValueError("empty history")
    keys = list(terms or [k for k in steps[0] if any(s.get(k, 0) != 0 for s in steps)])
    fig = go.Figure()
    for k in keys:
        y = np.asarray([s.get(k, np.nan) for s in steps], dtype=float)
        if smooth > 1:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="valid")
        fig.add_scatter(y=y, name=k, mode="lines")
    fig.update_layout(title=title, xaxis_title="step", yaxis_title="loss", yaxis_type="log")
    return fig


def swap_by_alpha(
    results,
    scorers: Sequence[str] = ("exact", "first_token", "lenient"),
    show_rates: bool = True,
    title: str = "Swap success by α",
) -> go.Figure:
    """Swap success against α for each scorer (with Wilson 95% bands), plus kept-A and type-B rates.
    `results` is a `SwapResults` (or its dict), or a mapping label → SwapResults to overlay several methods
    (then only the first scorer is drawn per method)."""
    fig = go.Figure()
    many = isinstance(results, Mapping) and "success" not in results
    runs = {k: _as_dict(v) for k, v in results.items()} if many else {"": _as_dict(results)}
    for label, r in runs.items():
        for s in scorers[:1] if many else scorers:
            ci = np.asarray(r.get("ci", {}).get(s, []), dtype=float)
            err = None
            if ci.size:
                y = np.asarray(r["success"][s])
                err = {"type": "data", "symmetric": False, "array": ci[:, 1] - y, "arrayminus": y - ci[:, 0]}
            name = f"{label} {SCORER_LABELS.get(s, s)}".strip()
            fig.add_scatter(x=r["alphas"], y=r["success"][s], name=name, mode="lines+markers", error_y=err)
        if show_rates and not many:
            fig.add_scatter(
                x=r["alphas"], y=r["kept_source"], name="kept source answer", mode="lines", line={"dash": "dot"}
            )
            fig.add_scatter(
                x=r["alphas"], y=r["type_target"], name="any value of target type", mode="lines", line={"dash": "dash"}
            )
    mode = "" if many else f" ({runs[''].get('mode', '')} mode)"
    fig.update_layout(title=title + mode, xaxis_title="α", yaxis_title="rate", yaxis_range=[0, 1.02])
    return fig


def swap_pair_matrix(
    results,
    names: Sequence[str] | None = None,
    alpha: float | None = None,
    scorer: str = "exact",
    title: str | None = None,
) -> go.Figure:
    """Per-pair swap success (rows = source concept A, cols = target B) at `alpha` (default: best α)."""
    r = _as_dict(results)
    names = list(names or r["names"])
    rates = r["success"][scorer]
    i = int(np.nanargmax(rates)) if alpha is None else r["alphas"].index(float(alpha))
    m = np.asarray(r["pair"][scorer][i], dtype=float)
    fig = go.Figure(
        go.Heatmap(
            z=m, x=names, y=names, colorscale="Viridis", zmin=0, zmax=1, text=np.round(m, 2), texttemplate="%{text}"
        )
    )
    fig.update_layout(
        title=title or f"Swap success per pair ({SCORER_LABELS.get(scorer, scorer)}, α={r['alphas'][i]:g})",
        xaxis_title="target concept B",
        yaxis_title="source concept A",
        yaxis_autorange="reversed",
    )
    return fig


def layer_sweep_figure(
    table,
    metrics: Sequence[str] = (
        "binding_train",
        "binding_heldout",
        "stage1_binding_heldout",
        "swap_exact_best",
        "explained_variance_aligned",
    ),
    title: str = "AlignSAE by layer",
) -> go.Figure:
    """One line per metric against the hook of a `studies.layer_sweep` table (or its {"table": ...} dict)."""
    rows = table["table"] if isinstance(table, Mapping) else list(table)
    x = [r.get("hook", str(i)) for i, r in enumerate(rows)]
    fig = go.Figure()
    for m in metrics:
        if any(m in r for r in rows):
            fig.add_scatter(x=x, y=[r.get(m, np.nan) for r in rows], name=m, mode="lines+markers")
    fig.update_layout(title=title, xaxis_title="hook", yaxis_title="value", yaxis_range=[0, 1.02])
    return fig
