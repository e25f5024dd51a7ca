"""Two-hop study: swap examples and counterfactual chains; a seconds-long run on a tiny model."""

import pytest

from align_lens.training.config import Stage1Config
from align_lens.worlds.two_hop import TwoHopWorld
from align_lens.worlds.two_hop_study import StudyConfig, run_two_hop_study, summary_rows, swap_examples


@pytest.fixture(scope="module")
def world():
    return TwoHopWorld(n_entities=10, n_relations=3, seed=2, ood_fraction=0.0, n_heldout=30)


def test_step1_swap_lookup_holds_the_counterfactual_chain(world):
    items, lookup = swap_examples(world, "step1", StudyConfig(n_train=20, n_heldout=30))
    assert len(items) == 30
    for e in items:
        assert e.entity is not None
        e1, r2 = e.entity.split("|")
        assert lookup[(e.entity, e.concept)] == e.answer  # the unedited chain
        for r in world.relations:
            e2 = world.facts[(e1, r)]
            assert lookup[(e.entity, r)] == f"{e2} {world.facts[(e2, r2)]}"


def test_step2_swap_examples_end_with_the_bridge(world):
    items, lookup = swap_examples(world, "step2", StudyConfig(n_train=20, n_heldout=30))
    for e in items:
        assert e.prompt.split()[-1] == e.entity and lookup[(e.entity, e.concept)] == e.answer


def test_tiny_study_runs_end_to_end(world, tmp_path):
    from align_lens.worlds.two_hop_model import train_two_hop_model

    model = train_two_hop_model(
        world, tmp_path, n_layers=1, d_model=32, steps=4, batch_size=16, checkpoint_every=0, eval_n=10, progress=False
    )
    cfg = StudyConfig(
        hook_name="blocks.0.hook_resid_mid",
        entity_hook_name="blocks.0.hook_resid_post",
        n_train=60,
        n_heldout=30,
        stage1=Stage1Config(d_sae=32, k=4, steps=5, batch_size=512),
        align_epochs=1,
        alphas=(1.0, 32.0),
        swap_items=2,
    )
    res = run_two_hop_study(model, world, cfg)
    keys = {"step1", "step2", "step1_heldout_frames", "step2_heldout_frames", "bridge_entity"}
    keys |= {f"step{k}/h{f}" for k in (1, 2) for f in (0, 1)}
    b = res["binding_heldout"]
    assert set(b) == {"aligned", "shuffled_labels", "sae_latent", "untrained"}
    for reader, by_key in b.items():
        assert set(by_key) == keys, reader
    assert set(res["accuracy_by_phrasing"]) == {"t0", "t1", "t2", "t3", "h0", "h1"}
    for step in ("step1", "step2"):
        assert set(res["swaps"][step]) == {"aligned_delta", "aligned_paper", "diffmean", "sae_latent"}
        for r in res["swaps"][step].values():
            assert r["alpha"] in (1.0, 32.0) and r["n_trials"] > 0 and len(r["pair_exact"]) == 3
            assert list(r["validation_by_alpha"]) == [1.0, 32.0]
            assert ("chain" in r) == (step == "step1")
            if step == "step1":
                c = r["chain"]
                assert c["whole"] == r["test_exact"] and c["first_hop"] == r["test_first_token"] >= c["whole"]
    assert res["time"]["wall_s"] > 0 and res["time"]["cpu_s"] > 0
    rows = summary_rows(res)
    assert any("step1 swap" in row["metric"] and "first_hop" in row for row in rows)
    floors = [row for row in rows if row["metric"].startswith("binding")]
    assert len(floors) == len(keys) and all("floor_untrained" in r and "floor_shuffled_labels" in r for r in floors)
