"""DAS baseline: an orthonormal subspace learned by interchange interventions, used through an Editor."""

from __future__ import annotations

import pytest
import torch

from align_lens.analysis.das import DASConfig, DASEditor, train_das
from align_lens.interventions.swaps import evaluate_swaps


def test_das_editor_replaces_the_subspace_component():
    basis = torch.tensor([[1.0, 0, 0], [0, 1.0, 0]])
    means = torch.tensor([[5.0, 5, 5], [-1.0, 2, 9]])
    ed = DASEditor(basis, means, ["a", "b"], "hook")
    h = torch.tensor([[1.0, 1, 1]])
    src, tgt = torch.tensor([0]), torch.tensor([1])
    assert torch.equal(ed(h, src, tgt, 0.0), h)
    assert torch.allclose(ed(h, src, tgt, 1.0), torch.tensor([[-1.0, 2, 1]]))  # only the span of the basis moves
    assert ed.unit == "subspace_mean"


def test_train_das_learns_and_swaps(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    train = ont.select("train")
    editor, info = train_das(
        model, train, trained["train_acts"], ont.names, hook, DASConfig(rank=4, steps=40, batch_size=32)
    )
    r = editor.basis
    assert r.shape == (4, model.cfg.d_model)
    assert torch.allclose(r @ r.T, torch.eye(4), atol=1e-4)  # orthonormal rows
    first, last = sum(info["loss"][:5]) / 5, sum(info["loss"][-5:]) / 5
    assert last < 0.7 * first, (first, last)
    res = evaluate_swaps(model, editor, trained["heldout_sample"], alphas=(0.0, 1.0), lookup=ont, max_items=3)
    assert res.success["exact"][0] == 0.0  # α = 0 leaves the model answering A
    assert res.success["exact"][1] > 0.3


def test_per_concept_editor_acts_in_the_span_of_source_and_target():
    bases = torch.tensor([[[1.0, 0, 0]], [[0, 1.0, 0]], [[0, 0, 1.0]]])  # concept c owns axis c
    means = torch.tensor([[5.0, 0, 0], [0, 7.0, 0], [0, 0, 9.0]])
    ed = DASEditor(bases, means, ["a", "b", "c"], "hook")
    h = torch.tensor([[4.0, 1, 1]])
    moved = ed(h, torch.tensor([0]), torch.tensor([1]), 1.0)
    assert torch.allclose(moved, torch.tensor([[0.0, 7, 1]]))  # axes a and b take mean_b's values, c untouched
    with pytest.raises(ValueError, match="per-concept bases"):
        DASEditor(bases[:2], means, ["a", "b", "c"], "hook")


@pytest.mark.slow  # DAS training; the fast suite keeps test_train_das_learns_and_swaps
def test_train_das_per_concept(trained):
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    config = DASConfig(rank=2, steps=40, batch_size=32, per_concept=True)
    editor, info = train_das(model, ont.select("train"), trained["train_acts"], ont.names, hook, config)
    r = editor.basis
    assert r.shape == (len(ont.names), 2, model.cfg.d_model)
    assert torch.allclose(r @ r.transpose(1, 2), torch.eye(2).expand(len(ont.names), 2, 2), atol=1e-4)
    first, last = sum(info["loss"][:5]) / 5, sum(info["loss"][-5:]) / 5
    assert last < 0.8 * first, (first, last)
    res = evaluate_swaps(model, editor, trained["heldout_sample"], alphas=(0.0, 1.0), lookup=ont, max_items=3)
    assert res.success["exact"][0] == 0.0
    assert res.success["exact"][1] > 0.3


@pytest.mark.slow  # DAS training; the fast suite keeps test_train_das_learns_and_swaps
def test_max_pairs_trains_on_a_seeded_sample_of_the_swap_pairs(trained, monkeypatch):
    import align_lens.analysis.das as das

    seen = []

    class Recording(das.CounterfactualBatch):
        def __init__(self, model, prompts, golds):
            seen.append(list(zip(prompts, golds)))
            super().__init__(model, prompts, golds)

    monkeypatch.setattr(das, "CounterfactualBatch", Recording)
    model, ont, hook = trained["model"], trained["ontology"], trained["hook"]
    train = ont.select("train")
    for seed in (0, 0, 1):
        train_das(model, train, trained["train_acts"], ont.names, hook, DASConfig(steps=1, max_pairs=7, seed=seed))
    train_das(model, train, trained["train_acts"], ont.names, hook, DASConfig(steps=1))
    assert [len(s) for s in seen[:3]] == [7, 7, 7] and len(seen[3]) > 7
    assert seen[0] == seen[1] != seen[2] and set(seen[0]) <= set(seen[3])
