"""Fidelity, off-ontology silence (hand-built SAEs), and spliced task accuracy / CE-KL on a trained model."""

from __future__ import annotations

import math

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import evals
from align_lens.saes.aligned import aligned_from_sae


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
    hits = recon["exact"] * recon["n"]  # a rate over the examples, consistent with the per-concept rates
    assert recon["n"] == len(ex) and hits == pytest.approx(round(hits)) and 0 <= round(hits) <= len(ex)
    assert hits == pytest.approx(sum(v["exact"] * v["n"] for v in recon["per_concept"].values()))
    assert recon["exact"] <= recon["lenient"]  # an exact answer is also a lenient match
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
