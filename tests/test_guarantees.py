"""The guarantees of docs/guarantees.md that are not a refused input: atomic saves, the concept table in cfg.json
and the Stage-2 resume fingerprint (the plain export read by a process without align_lens: tests/test_hub.py)."""

from __future__ import annotations

import json

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import AlignConfig, Ontology, Runtime, align
from align_lens.adapter import load_transformer, save_transformer
from align_lens.evals.binding import binding_metrics


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


def test_tiny_batches_without_patience_terminate_and_train():
    x = torch.randn(3, 16)  # 3 rows, batch 2: every epoch ends in a 1-row batch, which is skipped
    x[:, 0] += torch.tensor([3.0, -3.0, 3.0])
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept="ab"[i % 2]) for i in range(3)])
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=8))
    sae.cfg.metadata.hook_name = "h"
    cfg = AlignConfig(epochs=3, batch_size=2, patience=None, runtime=Runtime(progress=False))
    aligned = align(sae, onto, activations=x, config=cfg)
    assert len(aligned.history.steps) == 3  # one 2-row step per epoch
