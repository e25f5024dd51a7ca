import pytest
import torch
from sae_lens import SAE, StandardSAE, StandardSAEConfig

from align_lens import (
    AlignConfig,
    AlignedSAE,
    Ontology,
    align,
    gather_activations,
    gather_token_activations,
    pretrain_sae,
)
from align_lens.training.config import (
    CE_FROM_CONCEPTS,
    OptimiserConfig,
    Runtime,
    Stage1Config,
    binding_for,
    with_values,
)

HOOK = "blocks.1.hook_resid_post"
QUIET = Runtime(progress=False)
FAST = AlignConfig(epochs=30, batch_size=32, patience=None, runtime=QUIET)
E2E = AlignConfig(epochs=3, batch_size=128, runtime=QUIET)


def _random_sae(d_in=32, d_sae=64):
    sae = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=d_sae))
    sae.cfg.metadata.hook_name = HOOK
    return sae


def _blobs(n=60, c=3, d=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(c, d, generator=g) * 3
    y = torch.arange(c).repeat_interleave(n)
    return centres[y] + torch.randn(len(y), d, generator=g), y


def _onto(y, names=("a", "b", "c")):
    return Ontology.from_records([dict(prompt=f"p{i}", concept=names[int(v)]) for i, v in enumerate(y)], list(names))


def test_end_to_end_on_a_random_transformer(tiny_model, tiny_ontology, tmp_path):
    """Stage 1 + Stage 2 on a random 2-layer model: held-out binding 1.0, reconstruction kept, reload."""
    text = [e.prompt.removesuffix(" A:") for e in tiny_ontology.select("train")]  # no concept-bearing A: position
    tokens = gather_token_activations(tiny_model, text, HOOK)
    s1 = Stage1Config(d_sae=128, architecture="topk", k=8, steps=150, batch_size=128, hook_name=HOOK, model_name="tiny")
    stage1 = pretrain_sae(tokens, s1)
    aligned = align(stage1, tiny_ontology, model=tiny_model, unlabelled=tokens, config=E2E)

    held = gather_activations(tiny_model, tiny_ontology.prompts("heldout"), HOOK)
    acc = (aligned.concept_acts(held).argmax(-1) == tiny_ontology.labels("heldout")).float().mean().item()
    assert acc == 1.0

    mse = lambda sae: (sae(tokens) - tokens).pow(2).sum(-1).mean().item()  # noqa: E731
    assert mse(aligned) <= 1.25 * mse(stage1)  # stated margin: within 25% of the Stage-1 SAE

    aligned.save_model(tmp_path / "aligned")
    back = SAE.load_from_disk(tmp_path / "aligned")
    assert isinstance(back, AlignedSAE) and back.cfg.concept_names == tiny_ontology.names
    torch.testing.assert_close(back.concept_acts(held), aligned.concept_acts(held))
    assert back.cfg.metadata.hook_name == HOOK and back.cfg.metrics["binding_accuracy_train"] == 1.0


def test_input_sae_untouched_and_history_terms():
    x, y = _blobs()
    sae = _random_sae()
    before = {k: v.clone() for k, v in sae.state_dict().items()}
    aligned = align(sae, _onto(y), activations=x, unlabelled=torch.randn(200, 32), config=FAST)
    assert all(torch.equal(before[k], v) for k, v in sae.state_dict().items())
    assert len(x) % 32 not in (0, 1)  # the last batch of each epoch is partial
    # every step is recorded, though the terms are read back from the device in chunks
    assert len(aligned.history.steps) == 30 * (len(x) // 32 + 1) and not aligned.history.stopped_early
    step = aligned.history.steps[-1]
    assert set(step) == {"reconstruction", "sparsity", "binding", "decorrelation", "value", "silence", "total"}
    assert aligned.history.series("reconstruction")[-1] < aligned.history.series("reconstruction")[0]
    assert len(aligned.history.plot().data) >= 4
    assert (aligned.concept_acts(x).argmax(-1) == y).float().mean() == 1.0


def test_same_seed_same_numbers():
    x, y = _blobs()
    sae = _random_sae()
    run = lambda seed: align(sae, _onto(y), activations=x, config=with_values(FAST, {"runtime.seed": seed}))  # noqa: E731
    a, b, c = run(0), run(0), run(1)
    assert a.history.series("total") == b.history.series("total")
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    assert a.history.series("total") != c.history.series("total")


def test_frozen_free_latents_stay_fixed():
    x, y = _blobs()
    sae = _random_sae()
    aligned = align(sae, _onto(y), activations=x, config=with_values(FAST, {"train_free": False}))
    assert torch.equal(aligned.W_enc[:, :64], sae.W_enc) and torch.equal(aligned.W_dec[:64], sae.W_dec)
    assert torch.equal(aligned.b_dec, sae.b_dec)
    assert not torch.equal(aligned.W_enc[:, 64:], torch.zeros(32, 3))
    assert all(p.requires_grad for p in aligned.parameters())  # freezing is undone afterwards


@pytest.mark.parametrize("binding", ["ce", "mse_onehot"])
@pytest.mark.parametrize("init", ["diffmean", "random"])
def test_binding_kinds_and_inits_learn(binding, init):
    x, y = _blobs()
    cfg = with_values(FAST, {"epochs": 80, "optimiser.lr": 3e-3, "binding": binding, "init": init})
    aligned = align(_random_sae(), _onto(y), activations=x, config=cfg)
    assert (aligned.concept_acts(x).argmax(-1) == y).float().mean() == 1.0


def test_value_heads_are_trained_when_weighted():
    x, y = _blobs()
    recs = [dict(prompt=f"p{i}", concept="abc"[int(v)], answer=f"ans{i % 4}") for i, v in enumerate(y)]
    aligned = align(
        _random_sae(),
        Ontology.from_records(recs, ["a", "b", "c"]),
        activations=x,
        config=with_values(FAST, {"weights.value": 0.5}),
    )
    values = aligned.history.series("value")
    assert values[0] > 0 and values[-1] < values[0]
    with pytest.raises(ValueError, match="answers"):
        align(_random_sae(), _onto(y), activations=x, config=with_values(FAST, {"weights.value": 0.5}))


def test_early_stop_on_plateau():
    x, y = _blobs()
    optimiser = OptimiserConfig(lr=1e-6, warmup_steps=0, lr_schedule="constant")
    cfg = AlignConfig(epochs=500, batch_size=64, patience=2, optimiser=optimiser, runtime=QUIET)
    aligned = align(_random_sae(), _onto(y), activations=x, config=cfg)
    assert aligned.history.stopped_early and len(aligned.history.steps) < 500 * 2


def test_bad_inputs_have_clear_errors():
    x, y = _blobs()
    onto = _onto(y)
    with pytest.raises(ValueError, match=r"d_in=32"):
        align(_random_sae(), onto, activations=torch.randn(len(y), 16))
    bad = x.clone()
    bad[3, 3] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        align(_random_sae(), onto, activations=bad)
    with pytest.raises(ValueError, match="one label per row"):
        align(_random_sae(), onto, activations=x[:10])
    with pytest.raises(ValueError, match="model= .* or activations="):
        align(_random_sae(), onto)
    empty = Ontology(["a", "b"])
    with pytest.raises(ValueError, match="no training examples"):
        align(_random_sae(), empty, activations=x)


def test_pretrain_resumes_from_checkpoint(tmp_path, monkeypatch):
    from sae_lens.training.sae_trainer import SAETrainer

    g = torch.Generator().manual_seed(0)
    x = (torch.rand(2048, 8, generator=g) < 0.2).float() @ torch.randn(8, 16, generator=g)  # sparse codes
    kw = Stage1Config(d_sae=32, k=4, steps=150, batch_size=128, lr=1e-2, runtime=Runtime(seed=3))
    full = pretrain_sae(x, kw)
    ck = tmp_path / "ck"
    real_save = SAETrainer.save_checkpoint

    def save_then_crash(self, *args, **kwargs):
        real_save(self, *args, **kwargs)
        raise KeyboardInterrupt  # interrupted right after the mid-run checkpoint

    monkeypatch.setattr(SAETrainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        pretrain_sae(x, with_values(kw, {"checkpoint_dir": str(ck), "n_checkpoints": 1}))
    monkeypatch.setattr(SAETrainer, "save_checkpoint", real_save)
    real_step, steps = SAETrainer.step, []
    monkeypatch.setattr(SAETrainer, "step", lambda self, batch: steps.append(1) or real_step(self, batch))
    resumed = pretrain_sae(x, with_values(kw, {"checkpoint_dir": str(ck), "n_checkpoints": 1}))
    assert 0 < len(steps) < 150  # only the steps after the checkpoint ran
    for name, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[name], value), name  # bit for bit the uninterrupted run
    ev = lambda s: 1 - (s(x) - x).pow(2).sum() / (x - x.mean(0)).pow(2).sum()  # noqa: E731
    assert ev(full) > 0.5 and type(resumed).__name__ == "TopKSAE"


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(k=5), r"k \(checkpoint: 4, now: 5\)"),
        (dict(d_sae=48), r"d_sae \(checkpoint: 32, now: 48\)"),
        (dict(architecture="standard"), r"architecture \(checkpoint: 'topk', now: 'standard'\)"),
        (dict(lr=2e-2), r"settings.lr"),
    ],
)
def test_pretrain_refuses_a_checkpoint_of_another_run(tmp_path, change, named):
    x = torch.randn(256, 16)
    kw = Stage1Config(d_sae=32, k=4, steps=4, batch_size=64, lr=1e-2, checkpoint_dir=str(tmp_path), n_checkpoints=1)
    pretrain_sae(x, kw)
    with pytest.raises(ValueError, match=named):
        pretrain_sae(x, with_values(kw, change))
    with pytest.raises(ValueError, match="activations"):
        pretrain_sae(x + 1, kw)


def test_interrupted_align_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    from align_lens.training import objective
    from align_lens.training.stage2 import Stage2Trainer

    x, y = _blobs()
    sae, onto, u = _random_sae(), _onto(y), torch.randn(100, 32)
    cfg = with_values(FAST, {"epochs": 6, "checkpoint_dir": str(tmp_path / "ck")})
    straight = align(sae, onto, activations=x, unlabelled=u, config=with_values(cfg, {"checkpoint_dir": None}))

    real_save, calls = Stage2Trainer.save_checkpoint, []

    def save_then_crash(*args, **kwargs):
        real_save(*args, **kwargs)
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # interrupted right after epoch 2 was saved

    monkeypatch.setattr(Stage2Trainer, "save_checkpoint", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        align(sae, onto, activations=x, unlabelled=u, config=cfg)
    assert len(calls) == 2
    monkeypatch.setattr(Stage2Trainer, "save_checkpoint", real_save)
    real_terms, batches = objective.stage2_terms, []
    monkeypatch.setattr(objective, "stage2_terms", lambda *a, **k: batches.append(1) or real_terms(*a, **k))
    resumed = align(sae, onto, activations=x, unlabelled=u, config=cfg)
    per_epoch = len(straight.history.steps) // 6
    assert len(batches) == 4 * per_epoch  # only the 4 epochs that were not saved yet were run
    assert resumed.history.series("total") == straight.history.series("total")
    assert all(torch.equal(resumed.state_dict()[k], v) for k, v in straight.state_dict().items())
    with pytest.raises(ValueError, match=r"differs in settings.optimiser.lr \(checkpoint: 0.0\d+, now: 0.0005\)"):
        align(sae, onto, activations=x, config=with_values(cfg, {"optimiser.lr": 5e-4}))


@pytest.mark.slow
def test_compiled_objective_trains_the_same_sae():
    """AlignConfig(compile=True) runs the loss terms through torch.compile (inductor needs a C compiler on CPU)."""
    x, y = _blobs()
    sae, extra = _random_sae(), torch.randn(200, 32)
    config = with_values(FAST, {"epochs": 3})
    eager = align(sae, _onto(y), activations=x, unlabelled=extra, config=config)
    compiled = align(sae, _onto(y), activations=x, unlabelled=extra, config=with_values(config, {"compile": True}))
    torch.testing.assert_close(
        torch.tensor(compiled.history.series("total")),
        torch.tensor(eager.history.series("total")),
        rtol=1e-3,
        atol=1e-4,
    )
    torch.testing.assert_close(compiled.W_dec, eager.W_dec, rtol=1e-3, atol=1e-4)
    assert compiled.cfg.align_config["compile"] is True


def test_five_thousand_concepts_through_align():
    """A 5,000-concept ontology (labels listed in shuffled concept order) aligns in a few steps: a slot per
    concept, in the ontology's order, counts per concept by name, and training binding far above chance."""
    n_concepts, d = 5000, 32
    g = torch.Generator().manual_seed(0)
    names = [f"concept {i}" for i in range(n_concepts)]
    order = torch.randperm(n_concepts, generator=g).tolist()
    y = torch.arange(n_concepts).repeat(3)
    y = y[torch.randperm(len(y), generator=g)]
    x = (torch.randn(n_concepts, d, generator=g) * 3)[y] + 0.1 * torch.randn(len(y), d, generator=g)
    records = [dict(prompt=f"p{i}", concept=names[int(c)]) for i, c in enumerate(y)]
    onto = Ontology.from_records(records, [names[i] for i in order])
    labels = onto.labels("train")
    config = AlignConfig(steps=4, batch_size=1024, patience=None, runtime=QUIET)
    aligned = align(_random_sae(d_in=d, d_sae=64), onto, activations=x, labels=labels, config=config)
    assert aligned.cfg.d_sae == 64 + n_concepts and aligned.concept_names == onto.names
    assert aligned.cfg.concept_counts == [3] * n_concepts
    assert aligned.cfg.metrics["binding_accuracy_train"] > 0.5  # chance is 1/5,000
    own = aligned.concept_acts(x)[torch.arange(len(y)), labels]
    assert (own > 0).float().mean() > 0.5


@pytest.mark.parametrize("n_concepts", [CE_FROM_CONCEPTS - 1, CE_FROM_CONCEPTS])
def test_auto_binding_is_mse_onehot_below_the_threshold_and_ce_from_it(n_concepts):
    """The default "auto" trains exactly as the loss it names for this many concepts, and records that loss."""
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n_concepts).repeat(2)
    x = (torch.randn(n_concepts, 32, generator=g) * 3)[y] + 0.1 * torch.randn(len(y), 32, generator=g)
    onto = _onto(y, tuple(f"c{i}" for i in range(n_concepts)))
    expected = "ce" if n_concepts >= CE_FROM_CONCEPTS else "mse_onehot"
    assert AlignConfig().binding == "auto" and binding_for("auto", n_concepts) == expected
    runs = {}
    for binding in ("auto", expected, {"ce": "mse_onehot", "mse_onehot": "ce"}[expected]):
        config = AlignConfig(steps=3, batch_size=64, patience=None, binding=binding, runtime=QUIET)
        torch.manual_seed(0)
        runs[binding] = align(_random_sae(), onto, activations=x, config=config)
    assert runs["auto"].cfg.align_config["binding_used"] == expected
    assert runs["auto"].cfg.align_config["binding"] == "auto"
    torch.testing.assert_close(runs["auto"].W_enc, runs[expected].W_enc, rtol=0, atol=0)
    other = next(b for b in runs if b not in ("auto", expected))
    assert not torch.equal(runs["auto"].W_enc, runs[other].W_enc)  # the loss does change the weights
