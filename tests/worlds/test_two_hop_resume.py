"""Resuming an interrupted two-hop training run: same weights and log rows as an uninterrupted run."""

import json
import shutil

import pytest
import torch

import align_lens.worlds.two_hop_model as thm
from align_lens.training.schedule import warmup_cosine
from align_lens.worlds.two_hop import TwoHopWorld
from align_lens.worlds.two_hop_model import LOG_FILE, checkpoint_steps, load_checkpoint, train_two_hop_model

TINY = dict(n_layers=1, d_model=32, d_mlp=64, steps=12, warmup=4, batch_size=16, eval_n=20, threads=1, progress=False)
TINY |= dict(checkpoint_every=5, eval_every=2)  # checkpoints at 5, 10, 12; log rows at 0, 2, ..., 12


APPEND = thm._append  # the module's own row writer, before any monkeypatch


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def world():
    return TwoHopWorld(n_entities=8, n_relations=3, seed=1, ood_fraction=0.1, n_heldout=10)


@pytest.fixture(scope="module")
def uninterrupted(world, tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted")
    return out, train_two_hop_model(world, out, "implicit", **TINY)


def rows(out) -> list[dict]:
    """Log rows without wall-clock time."""
    return [
        {k: v for k, v in json.loads(r).items() if k != "wall_s"} for r in (out / LOG_FILE).read_text().splitlines()
    ]


def interrupt_after_row(monkeypatch, step: int) -> None:
    """Make training stop right after the log row of `step` is written (between two checkpoints)."""

    def stop(path, row):
        APPEND(path, row)
        if row["step"] == step:
            raise Interrupted

    monkeypatch.setattr(thm, "_append", stop)


def assert_same_weights(a, b) -> None:
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), name


def test_interrupted_then_resumed_equals_uninterrupted(world, uninterrupted, tmp_path, monkeypatch):
    out, model = uninterrupted
    with monkeypatch.context() as m:
        interrupt_after_row(m, 8)
        with pytest.raises(Interrupted):
            train_two_hop_model(world, tmp_path, "implicit", **TINY)
    assert [r["step"] for r in rows(tmp_path)] == [0, 2, 4, 6, 8]  # rows 6 and 8 lie past the checkpoint at 5
    assert checkpoint_steps(tmp_path) == [0, 5]
    resumed = train_two_hop_model(world, tmp_path, "implicit", **TINY)
    assert_same_weights(model, resumed)
    assert not torch.equal(load_checkpoint(tmp_path, 5).W_E, model.W_E)  # the comparison is not vacuous
    assert rows(tmp_path) == rows(out)  # no duplicated rows, identical losses and accuracies
    assert checkpoint_steps(tmp_path) == checkpoint_steps(out) == [0, 5, 10, 12]
    for step in checkpoint_steps(out):
        assert_same_weights(load_checkpoint(out, step), load_checkpoint(tmp_path, step))
    assert thm.load_two_hop_meta(tmp_path)["final"]["step"] == 12
    walls = [json.loads(r)["wall_s"] for r in (tmp_path / LOG_FILE).read_text().splitlines()]
    assert walls == sorted(walls)  # wall-clock time counts on across the interruption
    again = train_two_hop_model(world, tmp_path, "implicit", **TINY)  # a finished run resumes to the same model
    assert_same_weights(model, again)
    assert rows(tmp_path) == rows(out)


def test_checkpoint_of_other_settings_is_refused_and_nothing_is_lost(world, tmp_path, monkeypatch):
    with monkeypatch.context() as m:
        interrupt_after_row(m, 6)
        with pytest.raises(Interrupted):
            train_two_hop_model(world, tmp_path, "implicit", **TINY)
    before = {p.relative_to(tmp_path): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    other = TwoHopWorld(n_entities=9, n_relations=3, seed=1, ood_fraction=0.1, n_heldout=10)
    with pytest.raises(ValueError, match=r"differs in settings.lr \(checkpoint: 0.001, now: 0.002\).*resume=False"):
        train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr": 2e-3})
    with pytest.raises(ValueError, match=r"format \(checkpoint: 'implicit', now: 'explicit'\)"):
        train_two_hop_model(world, tmp_path, "explicit", **TINY)
    with pytest.raises(ValueError, match=r"world.n_entities \(checkpoint: 8, now: 9\).*Delete the checkpoint"):
        train_two_hop_model(other, tmp_path, "implicit", **TINY)
    with pytest.raises(
        ValueError, match=r"settings.seed \(checkpoint: 0, now: 1\); settings.steps \(checkpoint: 12, now: 4\)"
    ):  # fewer steps than the checkpoint has trained: not an extension
        train_two_hop_model(world, tmp_path, "implicit", **TINY | {"seed": 1, "steps": 4})
    after = {p.relative_to(tmp_path): p.read_bytes() for p in sorted(tmp_path.rglob("*")) if p.is_file()}
    assert after == before


def test_resume_false_starts_over(world, uninterrupted, tmp_path, monkeypatch):
    out, model = uninterrupted
    with monkeypatch.context() as m:
        interrupt_after_row(m, 6)
        with pytest.raises(Interrupted):
            train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr": 2e-3, "steps": 30})
    assert checkpoint_steps(tmp_path) == [0, 5]
    seen = []
    with monkeypatch.context() as m:
        m.setattr(thm, "_append", lambda path, row: (seen.append(row["step"]), APPEND(path, row)))
        fresh = train_two_hop_model(world, tmp_path, "implicit", **TINY, resume=False)
    assert seen == [0, 2, 4, 6, 8, 10, 12]  # trained from step 0 again
    assert_same_weights(model, fresh)
    assert rows(tmp_path) == rows(out)
    assert checkpoint_steps(tmp_path) == [0, 5, 10, 12]
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("*.pt")) == ["step_000010.pt", "step_000012.pt"]


def test_init_scale_multiplies_the_weight_matrices_at_step_0_and_is_part_of_the_fingerprint(world, tmp_path):
    short = TINY | {"steps": 2, "eval_every": 0, "checkpoint_every": 5}
    train_two_hop_model(world, tmp_path / "plain", "implicit", **short)
    train_two_hop_model(world, tmp_path / "scaled", "implicit", **short | {"init_scale": 3.0})
    plain, scaled = load_checkpoint(tmp_path / "plain", 0), load_checkpoint(tmp_path / "scaled", 0)
    for (name, x), y in zip(plain.named_parameters(), scaled.parameters()):
        assert torch.allclose(y, 3 * x) if x.dim() >= 2 else torch.equal(x, y), name  # LayerNorm and biases kept
    with pytest.raises(ValueError, match=r"settings.init_scale \(checkpoint: 3.0, now: 2.0\)"):
        train_two_hop_model(world, tmp_path / "scaled", "implicit", **short | {"init_scale": 2.0})


def test_lr_final_decays_the_lr_by_a_cosine_and_is_part_of_the_fingerprint(world, uninterrupted, tmp_path, monkeypatch):
    seen: list[float] = []
    step = torch.optim.AdamW.step

    def record(opt, *args, **kwargs):
        seen.append(opt.param_groups[0]["lr"])
        return step(opt, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", record)
    decayed = train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr_final": 0.1})
    lr, warmup, steps = 1e-3, TINY["warmup"], TINY["steps"]
    assert seen[:warmup] == pytest.approx([lr * s / warmup for s in range(1, warmup + 1)])
    assert seen[-1] == pytest.approx(lr * warmup_cosine(steps - 1, steps, warmup, 0.1)) and seen[-1] < 0.15 * lr
    assert seen[warmup] == pytest.approx(lr) and all(a > b for a, b in zip(seen[warmup:], seen[warmup + 1 :]))
    assert len(seen) == steps and seen[warmup + (steps - warmup) // 2] == pytest.approx(0.55 * lr)
    assert not torch.equal(decayed.W_E, uninterrupted[1].W_E)  # the constant-lr run (lr_final 1) differs
    assert thm.load_two_hop_meta(tmp_path)["lr_final"] == 0.1
    with pytest.raises(ValueError, match=r"settings.lr_final \(checkpoint: 0.1, now: 0.5\)"):
        train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr_final": 0.5})


def test_a_finished_constant_lr_run_extends_to_more_steps_as_if_uninterrupted(world, uninterrupted, tmp_path):
    out, _ = uninterrupted
    longer = TINY | {"steps": 20}
    straight = train_two_hop_model(world, tmp_path / "straight", "implicit", **longer)
    for name in ("checkpoints", LOG_FILE):
        src, dst = out / name, tmp_path / "extended" / name
        dst.parent.mkdir(exist_ok=True)
        (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    extended = train_two_hop_model(world, tmp_path / "extended", "implicit", **longer)  # resumes the 12-step run
    assert_same_weights(straight, extended)
    assert rows(tmp_path / "extended") == rows(tmp_path / "straight")
    assert thm.load_two_hop_meta(tmp_path / "extended")["final"]["step"] == 20


def test_a_cosine_run_does_not_extend(world, tmp_path):
    train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr_final": 0.1})
    with pytest.raises(ValueError, match=r"settings.steps \(checkpoint: 12, now: 20\)"):
        train_two_hop_model(world, tmp_path, "implicit", **TINY | {"lr_final": 0.1, "steps": 20})
