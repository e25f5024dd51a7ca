"""Two-hop study controls: the untrained floor's initialisation, shuffled labels, the split of the step-1 swap,
readers and floors on the shipped model, accuracy per phrasing."""

import pytest
import torch

from align_lens.training.config import AlignConfig, Runtime, Stage1Config
from align_lens.worlds.two_hop import TwoHopWorld
from align_lens.worlds.two_hop_controls import Site, accuracy_by_phrasing, chain_split, groups, readings, shuffled
from align_lens.worlds.two_hop_model import (
    load_checkpoint,
    load_two_hop_model,
    load_two_hop_world,
    train_two_hop_model,
    untrained_like,
)


@pytest.fixture(scope="module")
def shipped():
    return load_two_hop_model(), load_two_hop_world()


def test_untrained_like_is_the_step0_checkpoint_of_the_same_seed(tmp_path):
    world = TwoHopWorld(n_entities=8, n_relations=2, seed=1, ood_fraction=0.0, n_heldout=10)
    trained = train_two_hop_model(
        world,
        tmp_path,
        n_layers=1,
        d_model=16,
        steps=1,
        batch_size=8,
        seed=3,
        checkpoint_every=1,
        eval_n=4,
        progress=False,
    )
    step0 = load_checkpoint(tmp_path, 0).state_dict()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    same = untrained_like(trained, 3).state_dict()
    assert torch.rand(1) == before  # the caller's RNG is left alone
    assert all(torch.equal(same[k], v) for k, v in step0.items()) and same.keys() == step0.keys()
    other = untrained_like(trained, 4).state_dict()
    assert not torch.equal(other["embed.W_E"], step0["embed.W_E"])
    assert not torch.equal(trained.state_dict()["embed.W_E"], step0["embed.W_E"])  # training moved it


def test_shuffled_keeps_the_label_counts_and_breaks_the_pairing():
    y = torch.arange(20).repeat(10)
    s = shuffled(y, 0)
    assert torch.equal(torch.bincount(s), torch.bincount(y)) and torch.equal(s, shuffled(y, 0))
    assert (s == y).float().mean() < 0.2 and not torch.equal(s, shuffled(y, 1))


def _rows(first_exact):
    return {"alphas": [1.0], "outputs": [{"first_token": f, "exact": e} for f, e in first_exact]}


def test_chain_split_separates_the_first_hop_from_the_rest():
    r = chain_split(_rows([(True, True), (True, False), (False, False), (True, True)]))
    assert r == {"first_hop": 0.75, "rest_given_first_hop": 2 / 3, "whole": 0.5}
    assert chain_split(_rows([(False, False)]))["rest_given_first_hop"] != 0.0  # NaN: no first hop right
    with pytest.raises(ValueError, match="one α"):
        chain_split({"alphas": [1.0, 2.0], "outputs": [{"first_token": True, "exact": True}]})


def test_groups_name_steps_frames_and_fixed_sites(shipped):
    _, world = shipped
    onto = world.relation_ontology("explicit", (1, 2), 200, 10, 0, "heldout")
    assert set(groups(onto, "step")) == {"step1", "step2"}
    assert set(groups(onto, "step_frames")) == {"step1_heldout_frames", "step2_heldout_frames"}
    assert set(groups(onto, "frame")) <= {"step1/h0", "step1/h1", "step2/h0", "step2/h1"}
    assert groups(onto, "bridge_entity") == ["bridge_entity"] * 20


def test_readers_and_floors_on_the_shipped_model(shipped):
    from align_lens.activations.gather import gather_activations, gather_token_activations
    from align_lens.analysis.baselines import stage1_best_latents
    from align_lens.training.stage1 import pretrain_sae

    model, world = shipped
    hook = "blocks.0.hook_resid_mid"
    onto = world.relation_ontology("explicit", (1, 2), 400, 100, 0)
    site = Site(onto, hook, [(onto, [groups(onto, "step")])])
    rt = Runtime(seed=0, progress=False)
    stage1 = Stage1Config(d_sae=64, k=8, steps=150, batch_size=256, hook_name=hook, runtime=rt)
    sae = pretrain_sae(gather_token_activations(model, onto.prompts("train")[:300], hook), stage1)
    align_cfg = AlignConfig(epochs=4, runtime=rt)
    b, fits = readings(model, sae, site, align_cfg, ("aligned", "shuffled_labels", "sae_latent"), 0)
    assert set(b["aligned"]) == {"step1", "step2"} and set(fits) == {"train_acts", "aligned", "sae_latent"}
    assert min(b["aligned"].values()) > 0.9  # r1 / r2 are readable on the trained model
    assert max(b["shuffled_labels"].values()) < 0.3  # shuffled labels: about chance (1/20) plus what leaks
    held = gather_activations(model, onto.prompts("heldout"), hook, "last", 256)
    direct = stage1_best_latents(
        sae, fits["train_acts"], onto.labels("train"), onto.names, held, onto.labels("heldout")
    )
    assert direct["latents"] == fits["sae_latent"]["latents"]  # chosen on training activations only
    pooled = direct["binding_heldout"]["accuracy"]  # the two steps have 100 held-out rows each
    assert b["sae_latent"]["step1"] + b["sae_latent"]["step2"] == pytest.approx(2 * pooled)
    with pytest.raises(ValueError, match="unknown readers"):
        readings(model, sae, site, align_cfg, ("probe",), 0)


def test_accuracy_by_phrasing_of_the_shipped_model(shipped):
    model, world = shipped
    acc = accuracy_by_phrasing(model, world.relation_ontology("explicit", (1, 2), 200, 200, 0))
    assert set(acc) == {"t0", "t1", "t2", "t3"} and min(acc.values()) >= 0.95  # held-out compositions: 1.000
    held = accuracy_by_phrasing(model, world.relation_ontology("explicit", (1, 2), 200, 200, 0, "heldout"))
    assert set(held) == {"h0", "h1"}
    with pytest.raises(ValueError, match="no held-out step3"):
        accuracy_by_phrasing(model, world.relation_ontology("explicit", (1, 2), 200, 20, 0), "step3")
