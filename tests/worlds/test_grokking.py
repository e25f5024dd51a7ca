"""Grokking diagnostic: crossings, and a seconds-long run over a tiny world's checkpoints."""

import json

import pytest

from align_lens.training.config import Stage1Config
from align_lens.worlds.grokking import GrokkingConfig, crossing, grokking_figure, run_grokking


def test_crossing_is_the_first_step_at_or_above_the_threshold():
    steps = [0, 250, 500, 750]
    assert crossing(steps, [0.1, 0.6, 0.4, 0.95], 0.5) == 250
    assert crossing(steps, [0.1, 0.6, 0.4, 0.95], 0.9) == 750
    assert crossing(steps, [0.1, 0.2, 0.3, 0.4], 0.9) is None


@pytest.fixture(scope="module")
def record(tmp_path_factory):
    out = tmp_path_factory.mktemp("grok")
    cfg = GrokkingConfig(
        out_dir=str(out),
        steps=10,
        checkpoint_every=10,
        n_entities=10,
        n_relations=3,
        world_heldout=20,
        n_train=60,
        n_heldout=20,
        stage1=Stage1Config(d_sae=32, k=4, steps=20, batch_size=256),
        align_epochs=1,
        hook_name="blocks.1.hook_resid_post",
    )
    return out, run_grokking(cfg)


def test_run_writes_one_row_per_checkpoint(record):
    out, rec = record
    assert [r["step"] for r in rec["rows"]] == [0, 10]
    for r in rec["rows"]:
        for key in (
            "train",
            "heldout",
            "ood",
            "relation_step1",
            "relation_step2",
            "bridge_entity",
            "bridge_entity_at_r1",
        ):
            assert 0.0 <= r[key] <= 1.0
    assert json.loads((out / "grokking.json").read_text())["rows"] == rec["rows"]
    assert "plotly" in (out / "grokking.html").read_text()
    assert set(rec["crossings"]) >= {"heldout>=0.5", "heldout>=0.9", "bridge_entity>=0.9"}


def test_figure_has_accuracy_and_binding_panels(record):
    _, rec = record
    fig = grokking_figure(rec)
    names = [t.name for t in fig.data]
    assert "heldout compositions" in names and "relation step1" in names and "bridge entity at r1" in names
    assert len(names) == 7
    assert {t.xaxis for t in fig.data} == {"x", "x2"}


def test_loading_a_model_folder_without_logged_checkpoints_fails(tmp_path):
    (tmp_path / "model").mkdir()
    cfg = GrokkingConfig(out_dir=str(tmp_path / "o"), model_dir=str(tmp_path / "model"))
    with pytest.raises(FileNotFoundError):
        run_grokking(cfg)
