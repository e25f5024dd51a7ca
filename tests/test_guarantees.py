"""The guarantees of docs/guarantees.md that are not a refused input: atomic saves, the concept table in cfg.json,
a faithful plain export read by a process without align_lens, and the Stage-2 resume fingerprint."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig
from safetensors.torch import save_file

from align_lens import AlignConfig, Ontology, Runtime, align
from align_lens.adapter import load_transformer, save_transformer
from align_lens.evals.binding import binding_metrics
from align_lens.hub import load_aligned
from align_lens.saes.plain import export_plain


def test_aligned_save_replaces_the_folder(trained, tmp_path):
    aligned, onto = trained["aligned"], trained["ontology"]
    target = tmp_path / "sae"
    aligned.save_model(target, ontology=onto)
    (target / "sparsity.safetensors").write_bytes(b"stale")
    assert (target / "ontology.json").exists()
    aligned.save_model(target)  # a second save without sparsity or ontology
    assert sorted(p.name for p in target.iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]  # no temporary or backup folder left beside it
    cfg = json.loads((target / "cfg.json").read_text())
    assert cfg["concept_names"] == onto.names and cfg["ontology_hash"] == onto.fingerprint()
    assert cfg["concept_counts"] == [onto.counts()[n]["train"] for n in onto.names] and min(cfg["concept_counts"]) > 0


def test_failed_save_leaves_the_old_folder(trained, tmp_path, monkeypatch):
    from sae_lens import SAE

    aligned = trained["aligned"]
    aligned.save_model(tmp_path / "sae")
    before = (tmp_path / "sae" / "sae_weights.safetensors").read_bytes()

    def crash(self, path):
        (path / "cfg.json").write_text("{")
        raise OSError("disk full")

    monkeypatch.setattr(SAE, "save_model", crash)
    with pytest.raises(OSError, match="disk full"):
        aligned.save_model(tmp_path / "sae")
    assert (tmp_path / "sae" / "sae_weights.safetensors").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["sae"]


def test_model_save_replaces_its_own_files_only(tiny_model, tmp_path):
    (tmp_path / "world.json").write_text("{}")  # a file of the caller: kept
    (tmp_path / "tokenizer").mkdir()
    (tmp_path / "tokenizer" / "stale.json").write_text("{}")  # from an earlier save: replaced
    save_transformer(tiny_model, tmp_path)
    assert (tmp_path / "world.json").exists() and not (tmp_path / "tokenizer" / "stale.json").exists()
    tokens = tiny_model.to_tokens(["Q: alpha A:"])
    assert torch.equal(load_transformer(tmp_path)(tokens), tiny_model(tokens))


def test_binding_is_matched_by_name(trained):
    aligned, onto, acts = trained["aligned"], trained["ontology"], trained["heldout_acts"]
    shuffled = Ontology(list(reversed(onto.concepts)), onto.examples)
    z = aligned.concept_acts(acts)
    names = aligned.concept_names
    same = binding_metrics(z, onto.labels("heldout", order=names), names)["accuracy"]
    other = binding_metrics(z, shuffled.labels("heldout", order=names), names)["accuracy"]
    assert same == other and same > 0.9


def test_align_resume_refuses_another_ontology(trained, tmp_path):
    onto, acts = trained["ontology"], trained["train_acts"]
    cfg = AlignConfig(epochs=1, checkpoint_dir=str(tmp_path), runtime=Runtime(progress=False))
    align(trained["sae"], onto, activations=acts, config=cfg)
    renamed = Ontology.from_records(
        [dict(prompt=e.prompt, concept=e.concept.lower(), split=e.split) for e in onto.examples]
    )
    with pytest.raises(ValueError, match=r"differs in ontology \(checkpoint: '[0-9a-f]{16}', now: '[0-9a-f]{16}'\)"):
        align(trained["sae"], renamed, activations=acts, config=cfg)


def test_plain_export_of_the_default_pipeline_in_a_fresh_process(trained, tmp_path):
    """The TopK-based default SAE, exported plain, loaded by SAELens alone: same slots, reconstruction, binding."""
    aligned, acts, onto = trained["aligned"], trained["heldout_acts"], trained["ontology"]
    assert aligned.cfg.base_architecture == "topk"
    export_plain(aligned, tmp_path / "plain", activations=acts)
    with torch.no_grad():
        z = aligned.encode(acts)
        expected = {"x": acts, "slots": z[:, aligned.cfg.n_free :].contiguous(), "recon": aligned.decode(z)}
    save_file({k: v.contiguous() for k, v in expected.items()}, tmp_path / "io.safetensors")
    code = f"""
import sys, torch
from safetensors.torch import load_file
from sae_lens import SAE
io = load_file({str(tmp_path / "io.safetensors")!r})
sae = SAE.load_from_disk({str(tmp_path / "plain")!r})
table = sae.cfg.metadata["align_lens"]
with torch.no_grad():
    z = sae.encode(io["x"])
    slots = z[:, table["concept_slots"]] / table["slot_value_scale"]
    torch.testing.assert_close(slots, io["slots"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sae.decode(z), io["recon"], atol=1e-4, rtol=1e-5)
assert (slots.argmax(-1) == io["slots"].argmax(-1)).all()
assert "align_lens" not in sys.modules, "align_lens was imported"
print(type(sae).__name__, table["fidelity"]["rows_differing"], len(io["x"]))
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["TopKSAE", "0", str(len(acts))]
    names = aligned.concept_names
    back = load_aligned(tmp_path / "plain")
    labels = onto.labels("heldout", order=names)
    binding = binding_metrics(back.concept_acts(acts), labels, names)["accuracy"]
    assert binding == binding_metrics(aligned.concept_acts(acts), labels, names)["accuracy"] > 0.9


def test_tiny_batches_without_patience_terminate_and_train():
    x = torch.randn(3, 16)  # 3 rows, batch 2: every epoch ends in a 1-row batch, which is skipped
    x[:, 0] += torch.tensor([3.0, -3.0, 3.0])
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept="ab"[i % 2]) for i in range(3)])
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=8))
    sae.cfg.metadata.hook_name = "h"
    cfg = AlignConfig(epochs=3, batch_size=2, patience=None, runtime=Runtime(progress=False))
    aligned = align(sae, onto, activations=x, config=cfg)
    assert len(aligned.history.steps) == 3  # one 2-row step per epoch
