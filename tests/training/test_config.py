"""The trainers' configs (nested blocks, dotted copies, JSON), the one fingerprint helper, and Stage2Trainer's
setup / step / epoch / finalise against `align`."""

from __future__ import annotations

import pytest
import torch
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import AlignConfig, LossWeights, Ontology, OptimiserConfig, Runtime, Stage1Config, align
from align_lens.cli.options import default_of
from align_lens.training import checkpoint
from align_lens.training.config import config_from_dict, with_values
from align_lens.training.stage2 import Stage2Trainer


def test_blocks_are_separate_per_instance_and_shared_in_shape():
    a, b = AlignConfig(), AlignConfig()
    assert a.runtime is not b.runtime and a.weights is not b.weights
    assert type(a.runtime) is type(Stage1Config(d_sae=8).runtime) is Runtime


def test_with_values_sets_dotted_fields_and_leaves_the_original():
    base = AlignConfig(epochs=3, runtime=Runtime(progress=False))
    new = with_values(base, {"epochs": 5, "optimiser.lr": 3e-3, "runtime.seed": 7, "weights.silence": 1.0})
    assert (new.epochs, new.optimiser.lr, new.runtime.seed, new.weights.silence) == (5, 3e-3, 7, 1.0)
    assert new.runtime.progress is False and new.optimiser.warmup_steps == OptimiserConfig().warmup_steps
    assert (base.epochs, base.optimiser.lr, base.runtime.seed) == (3, OptimiserConfig().lr, 0)
    with pytest.raises(TypeError, match="nope"):
        with_values(base, {"optimiser.nope": 1})


def test_config_from_dict_builds_nested_blocks():
    config = config_from_dict(AlignConfig, {"epochs": 4, "optimiser": {"lr": 0.003}, "weights": {"binding": 2.0}})
    assert config == AlignConfig(epochs=4, optimiser=OptimiserConfig(lr=0.003), weights=LossWeights(binding=2.0))
    with pytest.raises(TypeError, match="lr"):
        config_from_dict(AlignConfig, {"lr": 0.003})  # lr lives in the optimiser block


def test_default_of_reads_nested_and_refuses_required_fields():
    assert default_of(AlignConfig, "optimiser.lr") == OptimiserConfig().lr
    assert default_of(Stage1Config, "runtime.device") == "cpu" and default_of(Stage1Config, "k") == 16
    with pytest.raises(KeyError, match=r"Stage1Config\(d_sae=...\) has no default"):
        default_of(Stage1Config, "d_sae")


def test_fingerprint_drops_runtime_only_fields_at_any_depth():
    a = checkpoint.fingerprint(AlignConfig(checkpoint_dir="x", runtime=Runtime(progress=False, threads=2)), data="h")
    b = checkpoint.fingerprint(AlignConfig(compile=True), data="h")
    assert a == b and a["data"] == "h" and "progress" not in a["settings"]["runtime"]
    c = checkpoint.fingerprint(AlignConfig(runtime=Runtime(seed=1)), data="h")
    with pytest.raises(ValueError, match=r"settings\.runtime\.seed \(checkpoint: 0, now: 1\)"):
        checkpoint.check_fingerprint(a, c, "ck")
    plain = checkpoint.fingerprint({"steps": 3, "progress": True}, world={"n": (1, 2)})
    assert plain == {"world": {"n": [1, 2]}, "settings": {"steps": 3}}  # JSON-plain, as read back


def _problem():
    g = torch.Generator().manual_seed(0)
    y = torch.arange(3).repeat_interleave(30)
    x = torch.randn(3, 16, generator=g)[y] * 3 + torch.randn(len(y), 16, generator=g)
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept="abc"[int(c)]) for i, c in enumerate(y)], list("abc"))
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32))
    sae.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    return sae, onto, x, torch.randn(100, 16, generator=g)


def test_trainer_driven_by_hand_equals_align():
    """setup, epoch after epoch, finalise: the very weights and history `align` returns."""
    sae, onto, x, u = _problem()
    config = AlignConfig(epochs=3, batch_size=32, patience=None, runtime=Runtime(progress=False))
    trainer = Stage2Trainer(sae, onto, activations=x, unlabelled=u, config=config)
    assert trainer.total == 3 * 3 and trainer.n_steps == 0
    epochs = 0
    while not trainer.done:
        trainer.epoch()
        epochs += 1
    by_hand = trainer.finalise()
    direct = align(sae, onto, activations=x, unlabelled=u, config=config)
    assert epochs == 3 and len(by_hand.history.steps) == 9
    assert by_hand.history.steps == direct.history.steps
    assert all(torch.equal(by_hand.state_dict()[k], v) for k, v in direct.state_dict().items())


def test_trainer_step_takes_one_optimiser_step():
    sae, onto, x, u = _problem()
    trainer = Stage2Trainer(sae, onto, activations=x, unlabelled=u, config=AlignConfig(runtime=Runtime(progress=False)))
    before = trainer.aligned.W_enc.detach().clone()
    trainer.step(torch.arange(8))
    assert trainer.n_steps == 1 and not torch.equal(before, trainer.aligned.W_enc)
