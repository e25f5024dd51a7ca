"""Baselines on hand-built activations with planted structure, and the side-by-side comparison."""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens.analysis import baselines
from align_lens.evals.evaluate import HEADLINE
from align_lens.interventions.editors import DirectionEditor, LatentEditor


def _planted(n=90, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 3
    x = torch.randn(n, d, generator=g) * 0.1
    x[torch.arange(n), labels] += 2.0  # concept c lives on axis c
    return x, labels


def _axis_sae(d=6, perm=(4, 0, 2)):
    """A ReLU SAE with 8 latents; latent perm[c] reads axis c, the rest read noise axes."""
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=8, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_dec.zero_()
        for c, j in enumerate(perm):
            sae.W_enc[c, j] = 1.0
            sae.W_dec[j, c] = 1.0
        sae.W_enc[3, 1] = sae.W_enc[4, 3] = sae.W_enc[5, 5] = 1.0
    return sae


def test_stage1_best_latents_finds_planted_latents():
    x, y = _planted()
    sae = _axis_sae()
    best = baselines.stage1_best_latents(sae, x, y, ["a", "b", "c"], x, y)
    assert best["latents"] == [4, 0, 2]
    assert best["binding"]["accuracy"] == 1.0 and best["binding_heldout"]["accuracy"] == 1.0
    assert all(s > 0 for s in best["scores"]) and best["scales"][0] == pytest.approx(2.0, abs=0.2)
    ed = LatentEditor(sae, best["latents"], best["names"], best["scales"])
    h = x[:1]  # concept a
    out = ed(h, torch.tensor([0]), torch.tensor([1]), 1.0)
    want = h.clone()  # latent 4 (reads and writes axis 0) zeroed; latent 0 (axis 1) set to b's scale
    want[0, 0] -= h[0, 0].clamp_min(0)
    want[0, 1] += best["scales"][1] - h[0, 1].clamp_min(0)
    torch.testing.assert_close(out, want, atol=1e-5, rtol=0)


def test_diffmean_swap_moves_class_mean():
    x, y = _planted()
    dm = baselines.diffmean_directions(x, y)
    assert dm["means"].shape == (3, 6) and torch.allclose(dm["units"].norm(dim=-1), torch.ones(3))
    ed = DirectionEditor(dm["means"], ["a", "b", "c"])
    moved = ed(x[y == 0], torch.zeros(30, dtype=torch.long), torch.ones(30, dtype=torch.long), 1.0)
    torch.testing.assert_close(moved.mean(0), dm["means"][1], atol=1e-5, rtol=0)
    assert baselines.diffmean_binding(x, y, dm, ["a", "b", "c"])["accuracy"] == 1.0


def test_linear_probe_separable():
    x, y = _planted()
    p = baselines.linear_probe(x, y, x[:30], y[:30], names=["a", "b", "c"], steps=100)
    assert p["train_accuracy"] == 1.0 and p["heldout_accuracy"] == 1.0
    assert p["weight"].shape == (3, 6)


def test_probe_directions_follow_the_probe_at_the_class_means_scale():
    x, y = _planted()
    p = baselines.linear_probe(x, y, names=["a", "b", "c"], steps=100)
    means = baselines.diffmean_directions(x, y)["means"]
    v = baselines.probe_directions(p, means)
    torch.testing.assert_close(v.norm(dim=-1), (means - means.mean(0)).norm(dim=-1))
    assert [int(i) for i in v[:, :3].argmax(-1)] == [0, 1, 2]  # concept c's direction lies on axis c
    moved = DirectionEditor(v, ["a", "b", "c"])(
        x[y == 0], torch.zeros(30, dtype=torch.long), torch.ones(30, dtype=torch.long), 1.0
    )
    assert bool((moved[:, 1] > moved[:, 0]).all())  # a's rows now read as b along the probe


@pytest.mark.slow  # every baseline end to end
def test_compare_baselines_on_trained_model(trained):
    r = baselines.compare_baselines(
        trained["model"],
        trained["sae"],
        trained["aligned"],
        trained["ontology"],
        alphas=(1.0, 2.0),
        steer_alphas=(1.0,),
        max_items=3,
        task_items=4,
        train_acts=trained["train_acts"],
        heldout_acts=trained["heldout_acts"],
    )
    rows = {row["method"]: row for row in r["rows"]}
    assert set(rows) == {
        "aligned slots (delta)",
        "aligned slots (paper)",
        "aligned slots (steer)",
        "stage-1 SAE best latents",
        "DiffMean",
        "linear probe",
    }
    al = rows["aligned slots (delta)"]
    assert al["binding_heldout"] > 0.9 and al["swap_exact_best"] > 0.5
    assert rows["linear probe"]["binding_heldout"] >= 0.9
    assert al["binding_train"] >= rows["stage-1 SAE best latents"]["binding_train"]
    best, n = rows["stage-1 SAE best latents"]["swap_exact_best"], rows["stage-1 SAE best latents"]["swap_trials"]
    assert n > 0 and best * n == pytest.approx(round(best * n)) and 0 <= round(best * n) <= n  # a rate over n trials
    assert set(HEADLINE) <= set(al) and al["explained_variance_stage1"] > 0 and "aligned_delta" in r["swaps"]
    for method in ("aligned slots (paper)", "stage-1 SAE best latents", "DiffMean"):  # one vocabulary, same trials
        assert {"swap_exact_best", "swap_best_alpha", "swap_trials"} <= set(rows[method])
        assert rows[method]["swap_trials"] == al["swap_trials"]
    assert r["swaps"]["diffmean"]["unit"] == "class_mean_diff" and r["swaps"]["aligned_paper"]["unit"] == "absolute"
