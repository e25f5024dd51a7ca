"""Bridge-swap trials of the grokking diagnostic (the diagnosis itself runs in tests/worlds/test_grokking.py)."""

from align_lens.worlds.grokking_checkpoint import bridge_trials
from align_lens.worlds.two_hop import make_two_hop_world


def test_bridge_trials_follow_the_swapped_in_bridge():
    world = make_two_hop_world(n_entities=12, n_relations=4, n_heldout=60, phrasing="compact")
    names = world.bridges()
    val, test = bridge_trials(world, names, 20, seed=0)
    assert len(val) == len(test) == 20 and not {t.prompt for t in val} & {t.prompt for t in test}
    for t in val + test:
        r2 = t.entity
        assert t.target != t.source and t.gold == world.facts[(t.target, r2)] != t.source_answer
        assert (t.target, r2) not in world.ood_facts
        assert t.prompt.split()[2:4] and t.prompt.endswith("A:")
    assert bridge_trials(world, names, 20, seed=0) == (val, test)
