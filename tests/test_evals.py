"""Evaluation metrics on hand-built cases with known answers, plus spliced accuracy on a trained model."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import evals
from align_lens.saes.aligned import aligned_from_sae

NAMES = ["a", "b", "c"]


# ---- binding ------------------------------------------------------------------------------
def test_binding_perfect():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    acts = torch.nn.functional.one_hot(labels, 3).float() * 2
    m = evals.binding_metrics(acts, labels, NAMES)
    assert m["accuracy"] == 1.0 and m["hungarian_accuracy"] == 1.0 and m["diagonal"] == 1.0
    assert m["confusion"] == [[2, 0, 0], [0, 2, 0], [0, 0, 2]]
    assert m["hungarian_assignment"] == [0, 1, 2]
    assert m["per_concept"]["b"] == {"accuracy": 1.0, "n": 2, "mean_own": 2.0, "margin": 2.0}


def test_binding_permuted_fixed_by_hungarian():
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 2])
    perm = torch.tensor([2, 0, 1])  # concept i fires column perm[i]
    acts = torch.nn.functional.one_hot(perm[labels], 3).float()
    m = evals.binding_metrics(acts, labels, NAMES)
    assert m["accuracy"] == 0.0
    assert m["hungarian_accuracy"] == 1.0
    assert m["hungarian_assignment"] == perm.tolist()
    assert m["confusion"][2] == [0, 3, 0]  # rows = true concept, cols = argmax column
    assert m["confusion"][0] == [0, 0, 2]


def test_binding_partial_confusion_and_templates():
    labels = torch.tensor([0, 0, 0, 0, 1, 1])
    acts = torch.tensor([[1, 0.0], [1, 0], [1, 0], [0, 1], [0, 1], [1, 0]])
    m = evals.binding_metrics(acts, labels, ["x", "y"], templates=["t1", "t1", "t2", "t2", "t1", "t2"])
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["diagonal"] == pytest.approx((3 / 4 + 1 / 2) / 2)
    assert m["confusion"] == [[3, 1], [1, 1]]
    assert m["per_template"] == {"t1": 1.0, "t2": pytest.approx(1 / 3)}


def test_binding_more_columns_than_concepts():
    labels = torch.tensor([0, 1, 1])
    acts = torch.zeros(3, 5)
    acts[0, 4] = 1
    acts[1:, 2] = 1
    m = evals.binding_metrics(acts, labels, ["x", "y"])
    assert m["hungarian_assignment"] == [4, 2] and m["hungarian_accuracy"] == 1.0


def test_binding_rejects_bad_input():
    with pytest.raises(ValueError):
        evals.binding_metrics(torch.zeros(3, 1), torch.tensor([0, 1, 1]), ["x", "y"])
    with pytest.raises(ValueError):
        evals.binding_metrics(torch.zeros(3, 2), torch.tensor([0, 1]), ["x", "y"])


# ---- fragmentation ------------------------------------------------------------------------
def test_fragmentation_one_hot_and_uniform():
    labels = torch.tensor([0, 0, 1, 1])
    acts = torch.zeros(4, 6)
    acts[:2, 4] = 3.0  # concept 0: all mass on latent 4 (its slot)
    acts[2:, :4] = 1.0  # concept 1: spread evenly over latents 0..3
    acts[2:, 5] = -2.0  # negative values carry no mass
    f = evals.fragmentation(acts, labels, slot_indices=[4, 5], names=["x", "y"])
    x, y = f["per_concept"]["x"], f["per_concept"]["y"]
    assert x["eff_feat_all"] == pytest.approx(1.0) and x["top1_all"] == pytest.approx(1.0)
    assert x["eff_feat_slots"] == pytest.approx(1.0) and x["top1_slot_is_own"] and x["top1_latent_all"] == 4
    assert y["eff_feat_all"] == pytest.approx(4.0) and y["top1_all"] == pytest.approx(0.25)
    assert math.isnan(y["eff_feat_slots"])  # no positive mass on the slots


# ---- fidelity -----------------------------------------------------------------------------
def _identity_sae(d=4, extra=2):
    sae = StandardSAE(StandardSAEConfig(d_in=d, d_sae=d + extra, apply_b_dec_to_input=False))
    with torch.no_grad():
        sae.W_enc.zero_()
        sae.W_dec.zero_()
        sae.b_enc.zero_()
        sae.b_dec.zero_()
        sae.W_enc[:, :d] = torch.eye(d)
        sae.W_dec[:d] = torch.eye(d)
    return sae


def test_fidelity_exact_reconstruction_and_dead_latents():
    sae = _identity_sae()
    x = torch.rand(50, 4) + 0.1  # positive: ReLU keeps everything
    f = evals.fidelity(sae, x)
    assert f["explained_variance"] == pytest.approx(1.0) and f["mse"] == pytest.approx(0.0, abs=1e-10)
    assert f["l0"] == pytest.approx(4.0) and f["dead_fraction"] == pytest.approx(2 / 6)
    assert f["cossim"] == pytest.approx(1.0)
    x[:, 0] = -1.0  # latent 0 now never fires; that feature is lost
    f = evals.fidelity(sae, x)
    assert f["dead_fraction"] == pytest.approx(3 / 6) and f["l0"] == pytest.approx(3.0) and f["mse"] > 0


def _aligned_identity():
    sae = _identity_sae(4, 0)
    al = aligned_from_sae(sae, ["p", "q"])
    with torch.no_grad():
        al.W_enc[0, 4] = 1.0  # slot p reads feature 0
        al.W_enc[1, 5] = 1.0  # slot q reads feature 1
        al.W_dec[4:] = 0.0
    return al


def test_fidelity_aligned_reports_slots():
    al = _aligned_identity()
    x = torch.rand(20, 4) + 0.1
    x[:, 1] = -0.5  # q never fires
    f = evals.fidelity(al, x)
    assert f["l0_concepts"] == pytest.approx(1.0) and f["dead_slots"] == 1


def test_off_ontology_silence():
    al = _aligned_identity()
    x = torch.zeros(10, 4)
    x[:3, 0] = 2.0
    s = evals.off_ontology_silence(al, x)
    assert s["per_concept"]["p"]["fire_rate"] == pytest.approx(0.3)
    assert s["per_concept"]["p"]["max"] == pytest.approx(2.0) and s["per_concept"]["q"]["max"] == 0.0
    assert s["mean_fire_rate"] == pytest.approx(0.15)


# ---- scorers ------------------------------------------------------------------------------
def test_lenient_match_is_the_official_rule():
    assert evals.lenient_match("San Diego State University", "San Diego")
    assert evals.lenient_match("San", "San Diego")  # a prefix counts
    assert evals.lenient_match("St", "University of St. Thomas")  # official cut at '.'
    assert not evals.lenient_match("", "x") and not evals.lenient_match("Boston", "Austin")


def test_wilson_interval():
    from align_lens.interventions.swaps import wilson

    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.192, abs=0.01)


# ---- on a trained model -------------------------------------------------------------------
def test_task_accuracy_clean_and_spliced(trained):
    model, ont, aligned = trained["model"], trained["ontology"], trained["aligned"]
    ex = trained["heldout_sample"]
    clean = evals.task_accuracy(model, ex, names=ont.names)
    assert clean["exact"] > 0.9 and clean["n"] == len(ex)
    assert set(clean["per_concept"]) == set(ont.names)
    exact_splice = evals.task_accuracy(model, ex, aligned, use_error_term=True)
    assert exact_splice["exact"] == clean["exact"]
    recon = evals.task_accuracy(model, ex, aligned, use_error_term=False)
    assert 0.0 <= recon["exact"] <= 1.0
    assert "blocks" not in aligned.hook_sae_acts_post.name  # the SAE's hook names are restored


def test_ce_kl_with_sae(trained):
    model, aligned = trained["model"], trained["aligned"]
    texts = [e.prompt + " " + e.answer for e in trained["heldout_sample"][:16]]
    r = evals.ce_kl(model, aligned, texts)
    assert r["kl_div"] >= -1e-6 and r["n_tokens"] > 0 and math.isfinite(r["ce_loss_score"])
    d = model.cfg.d_model  # a lossless SAE: relu(x) − relu(−x) = x
    exact = StandardSAE(StandardSAEConfig(d_in=d, d_sae=2 * d, apply_b_dec_to_input=False))
    with torch.no_grad():
        exact.b_enc.zero_()
        exact.b_dec.zero_()
        exact.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 1))
        exact.W_dec.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 0))
    exact.cfg.metadata.hook_name = trained["hook"]
    r = evals.ce_kl(model, exact, texts)
    assert r["ce_loss_with_sae"] == pytest.approx(r["ce_loss_without_sae"], abs=1e-4)
    assert r["kl_div"] == pytest.approx(0.0, abs=1e-5) and r["ce_loss_score"] == pytest.approx(1.0, abs=1e-4)
