"""Hook lookup, residual hooks, the first block that need not run, and where an edit attaches."""

import pytest

from align_lens.adapter import EditSite, read_site, residual_hooks, resolve_hook, stop_layer

HOOK = "blocks.1.hook_resid_post"


def test_resolve_hook_returns_a_known_hook_and_lists_close_names_for_an_unknown_one(tiny_model):
    assert resolve_hook(tiny_model, HOOK) == HOOK == read_site(tiny_model, HOOK)
    with pytest.raises(KeyError, match="blocks.1.hook_resid_post"):
        resolve_hook(tiny_model, "blocks.1.resid_post")


def test_stop_layer_and_residual_hooks(tiny_model):
    assert stop_layer("blocks.3.hook_resid_post") == 4
    assert stop_layer("hook_embed") == 0
    assert stop_layer("ln_final.hook_normalized") is None
    assert residual_hooks(tiny_model) == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_post",
    ]
    with_mid = residual_hooks(tiny_model, mid=True)
    assert with_mid == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_resid_mid",
        "blocks.0.hook_resid_post",
        "blocks.1.hook_resid_mid",
        "blocks.1.hook_resid_post",
    ]
    assert all(h in tiny_model.hook_dict for h in with_mid)


def test_edit_site_matches_the_hook_and_an_attached_saes_output_only():
    site = EditSite(HOOK)
    assert site(HOOK) and site(f"{HOOK}.hook_sae_output")
    assert not site(f"{HOOK}.hook_sae_input") and not site("blocks.0.hook_resid_post")
    assert str(site) == HOOK and repr(site) == f"EditSite({HOOK!r})"
