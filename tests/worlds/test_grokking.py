"""Grokking diagnostic: plateau and crossings, bridge-swap trials, and seconds-long runs over a tiny world."""

import json
import shutil
from dataclasses import replace

import pytest

from align_lens.training.config import Stage1Config
from align_lens.worlds import grokking
from align_lens.worlds.grokking import GrokkingConfig, crossing, grokking_figure, plateau, run_grokking, world_of
from align_lens.worlds.grokking_checkpoint import READERS, SERIES, SWAP_METHODS, key, swap_key


def test_crossing_is_the_first_step_at_or_above_the_threshold():
    steps = [0, 250, 500, 750]
    assert crossing(steps, [0.1, 0.6, 0.4, 0.95], 0.5) == 250
    assert crossing(steps, [0.1, 0.6, 0.4, 0.95], 0.9) == 750
    assert crossing(steps, [0.1, 0.2, 0.3, 0.4], 0.9) is None


def test_plateau_measures_fit_rise_and_grok():
    steps = [0, 100, 200, 300, 400, 500]
    p = plateau(steps, [0.0, 0.995, 1.0, 1.0, 1.0, 1.0], [0.0, 0.05, 0.1, 0.15, 0.6, 0.95])
    assert p == {"fit": 100, "rise": 400, "grok": 500, "plateau": 300, "ratio": 3.0}
    never = plateau(steps, [0.0, 0.5, 0.995, 1.0, 1.0, 1.0], [0.0] * 6)
    assert never["rise"] is None and never["grok"] is None and never["plateau"] == 300  # up to the last step


TINY = GrokkingConfig(
    seeds=(0,),
    steps=10,
    checkpoint_every=10,
    eval_every=5,
    n_entities=10,
    n_relations=3,
    world_heldout=20,
    world_train=None,
    n_train=60,
    n_heldout=20,
    stage1=Stage1Config(d_sae=32, k=4, steps=20, batch_size=256),
    align_epochs=1,
    swap_items=6,
    alphas=(1.0, 3.0),
    hook_name="blocks.1.hook_resid_post",
)


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("grok")
    return out, run_grokking(replace(TINY, out_dir=str(out), seeds=(0, 1)))


@pytest.mark.slow  # trains two-hop models for two seeds (the module fixture)
def test_run_writes_every_reader_and_swap_per_checkpoint_and_seed(record):
    out, rec = record
    assert set(rec["seeds"]) == {0, 1}
    for s, r in rec["seeds"].items():
        assert [row["step"] for row in r["rows"]] == [0, 10]
        for row in r["rows"]:
            for k in ("train", "heldout", "ood"):
                assert 0.0 <= row[k] <= 1.0
            for series in SERIES:
                for reader in READERS:
                    assert 0.0 <= row[key(series, reader)] <= 1.0
            for series in ("bridge_entity", "bridge_entity_at_r1"):
                for m in SWAP_METHODS:
                    assert 0.0 <= row[swap_key(series, m)] <= 1.0 and row[swap_key(series, m) + ".alpha"] in (1.0, 3.0)
        assert [a["step"] for a in r["accuracy"]] == [0, 5, 10]  # every logged evaluation, between checkpoints too
        for row in r["rows"]:
            a = next(a for a in r["accuracy"] if a["step"] == row["step"])
            assert (a["train"], a["heldout"], a["ood"]) == (row["train"], row["heldout"], row["ood"])
        assert r["plateau"] == plateau(*([a[k] for a in r["accuracy"]] for k in ("step", "train", "heldout")))
        assert {"train>=0.99", "heldout>=0.9", "bridge_entity.probe>=0.9", "swap.bridge_entity.aligned>=0.5"} <= set(
            r["crossings"]
        )
    saved = json.loads((out / "grokking.json").read_text())
    assert saved["seeds"]["1"]["rows"] == rec["seeds"][1]["rows"]
    assert "plotly" in (out / "grokking.html").read_text()
    band = rec["bands"]["bridge_entity"]
    rows = [r["rows"][1]["bridge_entity"] for r in rec["seeds"].values()]
    assert band["step"] == [0, 10] and band["min"][1] == min(rows) and band["max"][1] == max(rows)
    assert band["mean"][1] == pytest.approx(sum(rows) / 2)


@pytest.mark.slow  # trains two-hop models for two seeds (the module fixture)
def test_seeds_differ_and_a_rerun_is_bit_identical_and_resumes(record, tmp_path, monkeypatch):
    out, rec = record
    assert rec["seeds"][0]["rows"] != rec["seeds"][1]["rows"]
    fresh = run_grokking(replace(TINY, out_dir=str(tmp_path), seeds=(1,)))
    assert fresh["seeds"][1]["rows"] == rec["seeds"][1]["rows"]  # same seed, same numbers (1 thread)

    def no_work(*args, **kwargs):
        raise AssertionError("a finished checkpoint was diagnosed again")

    monkeypatch.setattr(grokking, "diagnose", no_work)
    again = run_grokking(replace(TINY, out_dir=str(out), seeds=(0, 1)))
    assert again["seeds"] == rec["seeds"]


@pytest.mark.slow  # trains two-hop models for two seeds (the module fixture)
def test_more_steps_extend_a_seed_and_diagnose_only_the_new_checkpoints(record, tmp_path, monkeypatch):
    out, rec = record
    shutil.copytree(out / "seed_0", tmp_path / "seed_0")
    seen = []
    diagnose = grokking.diagnose
    monkeypatch.setattr(grokking, "diagnose", lambda model, *a: seen.append(model) or diagnose(model, *a))
    longer = run_grokking(replace(TINY, out_dir=str(tmp_path), seeds=(0,), steps=20))
    assert len(seen) == 1  # step 20 only: steps 0 and 10 come from the cache
    rows = longer["seeds"][0]["rows"]
    assert [r["step"] for r in rows] == [0, 10, 20] and rows[:2] == rec["seeds"][0]["rows"]
    assert [a["step"] for a in longer["seeds"][0]["accuracy"]] == [0, 5, 10, 15, 20]


@pytest.mark.slow  # trains two-hop models for two seeds (the module fixture)
def test_figure_has_four_panels_with_bands(record):
    _, rec = record
    fig = grokking_figure(rec)
    names = [t.name for t in fig.data if t.name]
    assert "heldout compositions" in names and "relation step1" in names and "bridge entity at r1 shuffled" in names
    assert "swap aligned @ r1" in names and "swap random @ answer" in names and "probe" in names
    assert {t.xaxis for t in fig.data} == {"x", "x2", "x3", "x4"}
    held = next(t for t in fig.data if t.name == "heldout compositions")
    assert list(held.x) == [0, 5, 10]  # accuracy at every logged evaluation
    assert sum(1 for t in fig.data if t.fill == "toself") == sum(1 for t in fig.data if t.name)


def test_checkpoints_between_evaluations_are_refused_before_training(tmp_path, monkeypatch):
    monkeypatch.setattr(grokking, "train_two_hop_model", lambda *a, **k: pytest.fail("trained"))
    with pytest.raises(ValueError, match=r"checkpoint_every \(10\) must be a multiple of eval_every \(4\)"):
        grokking.run_seed(replace(TINY, out_dir=str(tmp_path), eval_every=4), seed=0)


def test_loading_a_model_folder_without_logged_checkpoints_fails(tmp_path):
    (tmp_path / "model").mkdir()
    cfg = GrokkingConfig(out_dir=str(tmp_path / "o"), model_dir=str(tmp_path / "model"), seeds=(0,))
    with pytest.raises(FileNotFoundError):
        run_grokking(cfg)


def test_one_model_folder_takes_one_seed(tmp_path):
    with pytest.raises(ValueError, match="one seed"):
        run_grokking(GrokkingConfig(out_dir=str(tmp_path), model_dir=str(tmp_path), seeds=(0, 1)))


def test_official_config_builds_the_layered_world():
    w = world_of(GrokkingConfig(official=True, world_train=None, phrasing="compact"))
    assert w.layered and len(w.splits["train"]) == len(w.splits["heldout"]) == 4000
    assert len(world_of(GrokkingConfig(official=True, world_train=1000)).splits["train"]) == 1000
    default = world_of(GrokkingConfig())
    assert not default.layered and len(default.splits["train"]) == 2000 and len(default.facts) == 50 * 10
    assert len(w.relations) == 20  # the official world keeps its 20 relations whatever the random world's default
    with pytest.raises(ValueError, match="world leaves 4000"):
        world_of(GrokkingConfig(official=True, world_train=5000))


def test_each_seed_trains_with_the_configs_schedule_and_initialisation(tmp_path, monkeypatch):
    seen = {}

    def stop(world, out_dir, fmt, **settings):
        seen.update(settings, n_facts=len(world.facts), fmt=fmt)
        raise RuntimeError("stopped before training")

    monkeypatch.setattr(grokking, "train_two_hop_model", stop)
    cfg = replace(TINY, out_dir=str(tmp_path), init_scale=4.0, weight_decay=0.03, lr=1e-3, steps=70)
    with pytest.raises(RuntimeError, match="stopped"):
        grokking.run_seed(cfg, seed=5)
    assert (seen["init_scale"], seen["weight_decay"], seen["lr"], seen["steps"], seen["seed"]) == (
        4.0,
        0.03,
        1e-3,
        70,
        5,
    )
    assert seen["n_facts"] == 10 * 3 and seen["fmt"] == "implicit"
    assert (seen["eval_every"], seen["checkpoint_every"]) == (5, 10)
