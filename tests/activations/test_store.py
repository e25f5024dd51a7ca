"""The on-disk activation store: sharded writes, resume after an interruption, streamed reads, and
Stage 1 / Stage 2 from a store giving the same SAE as the in-memory path."""

import json

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import (
    AlignConfig,
    Runtime,
    Stage1Config,
    align,
    gather_activations,
    gather_token_activations,
    pretrain_sae,
)
from align_lens.activations import store as store_module
from align_lens.activations.store import ActivationStore, write_ontology_store, write_store, write_tensor_store

QUIET = Runtime(progress=False)

HOOK = "blocks.1.hook_resid_post"
TEXTS = [f"Q: {a} {b} is the {c} A:" for a in ("ann", "bob", "cat") for b in ("dan", "eve") for c in ("alpha", "beta")]


def _prompts(ontology):
    return ontology.prompts("train")[:256]


def test_gather_writes_shards_and_a_manifest(tiny_model, tiny_ontology, tmp_path):
    prompts = _prompts(tiny_ontology)
    labels = tiny_ontology.labels("train")[:256]
    st = write_store(
        tmp_path, tiny_model, prompts, HOOK, labels=labels, concepts=tiny_ontology.names, prompts_per_shard=64
    )
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["complete"] and manifest["n_rows"] == 256 and manifest["d_in"] == 32
    assert [s["rows"] for s in manifest["shards"]] == [64] * 4
    assert manifest["hook_name"] == HOOK and manifest["position"] == "last" and manifest["dtype"] == "float32"
    assert manifest["concepts"] == tiny_ontology.names and len(manifest["ontology_hash"]) == 64
    assert torch.equal(st.read_all(), gather_activations(tiny_model, prompts, HOOK, batch_size=64))
    assert torch.equal(st.labels, labels)
    idx = torch.tensor([255, 0, 64, 63, 130, 130, 7])  # across shards, unordered, repeated
    assert torch.equal(st.take(idx), st.read_all()[idx])


def test_every_token_store_matches_the_in_memory_gather(tiny_model, tmp_path):
    st = write_store(tmp_path, tiny_model, TEXTS, HOOK, position=None, prompts_per_shard=5, batch_size=5)
    assert len(st.manifest["shards"]) == 3 and st.labels is None and st.manifest["position"] == "every_token"
    assert torch.equal(st.read_all(), gather_token_activations(tiny_model, TEXTS, HOOK, batch_size=5))


def test_interrupted_gather_resumes_and_keeps_finished_shards(tiny_model, tiny_ontology, tmp_path, monkeypatch):
    prompts = _prompts(tiny_ontology)
    whole = write_store(tmp_path / "whole", tiny_model, prompts, HOOK, prompts_per_shard=64).read_all()
    real, calls = store_module.gather_activations, []

    def dies_on_third_shard(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(store_module, "gather_activations", dies_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        write_store(tmp_path / "run", tiny_model, prompts, HOOK, prompts_per_shard=64)
    with pytest.raises(ValueError, match="did not finish"):
        ActivationStore(tmp_path / "run")
    kept = (tmp_path / "run" / "shard_00000.safetensors").stat().st_mtime_ns
    calls.clear()
    monkeypatch.setattr(store_module, "gather_activations", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed = write_store(tmp_path / "run", tiny_model, prompts, HOOK, prompts_per_shard=64)
    assert len(calls) == 2  # only the two missing shards were gathered
    assert (tmp_path / "run" / "shard_00000.safetensors").stat().st_mtime_ns == kept
    assert torch.equal(resumed.read_all(), whole)
    with pytest.raises(ValueError, match="another gather"):
        write_store(tmp_path / "run", tiny_model, prompts, "blocks.0.hook_resid_post", prompts_per_shard=64)


def test_half_precision_storage_and_bf16_autocast(tiny_model, tiny_ontology, tmp_path):
    prompts = _prompts(tiny_ontology)
    full = gather_activations(tiny_model, prompts, HOOK)
    half = write_store(tmp_path / "bf16", tiny_model, prompts, HOOK, dtype="bfloat16", autocast="bfloat16")
    assert half.dtype == torch.bfloat16 and half.take(torch.tensor([3, 1])).dtype == torch.bfloat16
    err = (half.read_all().float() - full).norm() / full.norm()
    assert 0 < err < 0.05  # bf16 rounding, not garbage
    f16 = write_store(tmp_path / "f16", tiny_model, prompts, HOOK, dtype="float16")
    assert torch.allclose(f16.read_all().float(), full, rtol=1e-3, atol=1e-3)


def _sae(d_in=32, d_sae=64):
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    sae.cfg.metadata.hook_name = HOOK
    return sae


def test_align_from_a_sharded_store_is_bit_identical(tiny_model, tiny_ontology, tmp_path):
    """Labelled store (4 shards) + unlabelled token store (3 shards) vs the same rows in memory."""
    labelled = write_ontology_store(tmp_path / "lab", tiny_model, tiny_ontology, HOOK, prompts_per_shard=320)
    tokens = write_store(tmp_path / "tok", tiny_model, TEXTS, HOOK, position=None, prompts_per_shard=5)
    assert len(labelled.manifest["shards"]) == 4 and len(tokens.manifest["shards"]) == 3
    acts = gather_activations(tiny_model, tiny_ontology.prompts("train"), HOOK)
    config = AlignConfig(steps=25, batch_size=96, unlabelled_batch_size=16, patience=None, runtime=QUIET)
    memory = align(_sae(), tiny_ontology, activations=acts, unlabelled=tokens.read_all(), config=config)
    streamed = align(_sae(), tiny_ontology, activations=labelled, unlabelled=tokens, config=config)
    for name, p in memory.state_dict().items():
        assert torch.equal(p, streamed.state_dict()[name]), name
    assert memory.history.steps == streamed.history.steps


def test_a_store_for_another_ontology_is_refused(tiny_model, tiny_ontology, tmp_path):
    from align_lens import Ontology

    st = write_ontology_store(tmp_path, tiny_model, tiny_ontology, HOOK)
    renamed = Ontology.from_records(
        [dict(prompt=e.prompt, concept=e.concept.upper()) for e in tiny_ontology.select("train")],
        [n.upper() for n in tiny_ontology.names],
    )
    with pytest.raises(ValueError, match="gathered for concepts"):
        align(_sae(), renamed, activations=st, config=AlignConfig(steps=2, runtime=QUIET))
    fewer = Ontology.from_records(
        [dict(prompt=e.prompt, concept=e.concept) for e in tiny_ontology.select("train")[:-4]], tiny_ontology.names
    )
    with pytest.raises(ValueError, match="other prompts or labels"):
        align(_sae(), fewer, activations=st, config=AlignConfig(steps=2, runtime=QUIET))
    with pytest.raises(ValueError, match="d_in=32 rows but the SAE expects d_in=16"):
        align(_sae(16), tiny_ontology, activations=st, config=AlignConfig(steps=2, runtime=QUIET))


def test_pretrain_from_a_store_matches_memory(tmp_path):
    x = torch.randn(600, 16) @ torch.randn(16, 16)
    st = write_tensor_store(tmp_path, x, rows_per_shard=128)
    kw = Stage1Config(d_sae=32, k=4, steps=20, batch_size=64, lr=1e-2, runtime=Runtime(seed=3))
    memory, streamed = pretrain_sae(x, kw), pretrain_sae(st, kw)
    for name, p in memory.state_dict().items():
        assert torch.equal(p, streamed.state_dict()[name]), name


def test_tensor_store_from_chunks_and_whole_set_statistics(tmp_path):
    from align_lens.training import data

    x = torch.randn(300, 8) * 3 + 5
    whole = write_tensor_store(tmp_path / "whole", x, rows_per_shard=100)
    chunked = write_tensor_store(tmp_path / "chunked", (x[a : a + 70] for a in range(0, 300, 70)))
    assert [s["rows"] for s in chunked.manifest["shards"]] == [70, 70, 70, 70, 20]
    assert torch.equal(whole.read_all(), x) and torch.equal(chunked.read_all(), x)
    assert data.total_variance(chunked) == data.total_variance(data.as_rows(x))
    assert data.total_variance(chunked) == pytest.approx(float(x.var(0).sum()), rel=1e-5)
    assert torch.allclose(data.column_mean(whole), x.mean(0), atol=1e-5)
    with pytest.raises(FileExistsError):
        write_tensor_store(tmp_path / "whole", x)
    with pytest.raises(ValueError, match="constant"):
        data.total_variance(write_tensor_store(tmp_path / "flat", torch.ones(10, 4)))
