"""Layer sweep, ablations and figure builders (small settings; the full sweep is marked slow)."""

from __future__ import annotations

import math
from dataclasses import replace

import plotly.graph_objects as go
import pytest

from align_lens import AlignConfig, EvalConfig, Runtime, Stage1Config
from align_lens.analysis import studies
from align_lens.evals.binding import binding_metrics
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.viz import figures

TINY_ALIGN = AlignConfig(epochs=3, runtime=Runtime(progress=False))


def _tiny_stage1(model) -> Stage1Config:
    return replace(studies.study_stage1(model), steps=100, batch_size=256, k=8)


TINY_EVAL = EvalConfig(alphas=(1.0, 2.0), swap_items=2, task_accuracy=False)


@pytest.mark.slow  # end to end over trained SAEs at every hook; the fast suite keeps test_figures_build
def test_layer_sweep_small(trained):
    model, ont = trained["model"], trained["ontology"]
    hooks = ["blocks.0.hook_resid_pre", trained["hook"]]
    out = studies.layer_sweep(model, ont, hooks, _tiny_stage1(model), TINY_ALIGN, TINY_EVAL, keep_saes=True)
    rows = out["table"]
    assert [r["hook"] for r in rows] == hooks and set(out["saes"]) == set(hooks)
    for key in (
        "binding_train",
        "binding_heldout",
        "stage1_binding_heldout",
        "explained_variance_aligned",
        "swap_best_alpha",
    ):
        assert all(key in r for r in rows)
    assert rows[1]["binding_heldout"] > 0.9  # the relation is readable mid-network
    fig = figures.layer_sweep_figure(out)
    assert isinstance(fig, go.Figure) and len(fig.data) == 5


@pytest.mark.slow  # end to end over trained SAEs at every hook; the fast suite keeps test_figures_build
def test_ablations_small(trained):
    rows = studies.ablations(
        trained["model"],
        trained["ontology"],
        trained["hook"],
        _tiny_stage1(trained["model"]),
        TINY_ALIGN,
        EvalConfig(swaps=False, task_accuracy=False),
        variants=["full", "no decorrelation", "no stage 1 (random SAE)"],
    )
    assert [r["variant"] for r in rows] == ["full", "no decorrelation", "no stage 1 (random SAE)"]
    chance = 1 / trained["ontology"].n_concepts
    assert all(chance < r["binding_train"] <= 1 and math.isfinite(r["explained_variance_aligned"]) for r in rows)
    assert rows[0]["explained_variance_aligned"] > rows[2]["explained_variance_aligned"]  # Stage 1 helps reconstruct
    assert all(math.isnan(r["swap_exact_best"]) for r in rows)  # swaps switched off: not measured
    with pytest.raises(ValueError):
        studies.ablations(trained["model"], trained["ontology"], trained["hook"], variants=["nope"])


def test_figures_build(trained):
    al, ont = trained["aligned"], trained["ontology"]
    b = binding_metrics(al.concept_acts(trained["heldout_acts"]).detach(), ont.labels("heldout"), ont.names)
    assert isinstance(figures.binding_heatmap(b["confusion"], ont.names), go.Figure)
    assert isinstance(figures.binding_heatmap(b, ont.names, normalize=False), go.Figure)
    assert isinstance(figures.loss_curves(al.history), go.Figure)
    res = evaluate_swaps(trained["model"], al, ont.select("heldout"), alphas=(0.5, 2.0), max_items=2, lookup=ont)
    fig = figures.swap_by_alpha(res)
    assert len(fig.data) == 5  # three scorers + kept + type
    assert len(figures.swap_by_alpha({"delta": res, "again": res.to_dict()}).data) == 2
    pm = figures.swap_pair_matrix(res, ont.names)
    assert pm.data[0].z.shape == (6, 6)


@pytest.mark.slow
def test_full_layer_sweep_and_ablations(trained):
    model, ont = trained["model"], trained["ontology"]
    sweep = studies.layer_sweep(model, ont)
    assert len(sweep["table"]) == 2 * model.cfg.n_layers + 1  # resid_pre 0, then resid_mid and resid_post per block
    assert [r["hook"] for r in sweep["table"]][:3] == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
    ]
    assert max(r["binding_heldout"] for r in sweep["table"]) > 0.95
    rows = studies.ablations(model, ont, trained["hook"])
    assert [r["variant"] for r in rows] == list(studies.ABLATIONS)
