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
        alphas=(1.0,),
        swap_items=2,
    )
    res = run_two_hop_study(model, world, cfg)
    assert set(res["relation_binding_heldout"]) == {"step1", "step2", "step1_heldout_frames", "step2_heldout_frames"}
    for step in ("step1", "step2"):
        for method in ("aligned_delta", "diffmean"):
            r = res["swaps"][step][method]
            assert r["alpha"] == 1.0 and r["n_trials"] > 0 and len(r["pair_exact"]) == 3
    assert any("step1 swap" in row["metric"] for row in summary_rows(res))
