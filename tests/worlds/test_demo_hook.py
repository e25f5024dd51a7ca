"""The demo's hook is where the shipped model's relation and person add up (benchmarks/hook_choice.py)."""

from align_lens.activations.gather import gather_activations
from align_lens.analysis.swap_ceiling import interaction_fraction
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DEFAULT_HOOK, DemoConfig


def test_default_hook_is_additive_and_the_one_after_the_mlp_is_not():
    model, world = load_base_model(), load_base_world()
    examples = world.ontology(40).select("train")
    split = {}
    for hook in (DEFAULT_HOOK, "blocks.0.hook_resid_post"):
        acts = gather_activations(model, [e.prompt for e in examples], hook)
        split[hook] = interaction_fraction(acts, [str(e.entity) for e in examples], [e.concept for e in examples])
    assert DemoConfig().hook_name == DEFAULT_HOOK == "blocks.0.hook_resid_mid"
    assert split[DEFAULT_HOOK]["interaction"] < 0.01
    assert split["blocks.0.hook_resid_post"]["interaction"] > 0.03
    assert split[DEFAULT_HOOK]["concept"] > 0.05  # the relation is there, not only the person
