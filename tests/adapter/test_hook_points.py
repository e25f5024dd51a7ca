"""Hook lookup, residual hooks, the first block that need not run, and where an edit attaches."""

import pytest
import torch

from align_lens.adapter import EditSite, build_model, logits_at, read_site, residual_hooks, resolve_hook, stop_layer

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


@pytest.mark.parametrize("norm", ["LN", None])
def test_logits_at_one_position_per_row_equal_the_full_forward_under_hooks(tiny_model, norm):
    torch.manual_seed(1)
    cfg = tiny_model.cfg.to_dict() | {"normalization_type": norm, "output_logits_soft_cap": 5.0 if norm else -1.0}
    model = build_model(cfg).eval()
    with torch.no_grad():  # a trained model's final LayerNorm and unembedding bias, not the identity of a fresh one
        for w in (model.unembed.b_U, *([model.ln_final.w, model.ln_final.b] if norm else [])):
            w.add_(torch.randn_like(w))
    tokens = torch.randint(0, cfg["d_vocab"], (3, 7))
    positions = torch.tensor([6, 0, 3])
    shift = torch.randn(cfg["d_model"])
    bump = [("blocks.0.hook_resid_post", lambda x, hook: x + shift)]
    with model.hooks(fwd_hooks=bump):
        full = model(tokens)[torch.arange(3), positions]
        assert torch.allclose(logits_at(model, tokens, positions), full, atol=1e-5)
    assert not torch.allclose(logits_at(model, tokens, positions), full, atol=1e-3)  # the hook was held, then gone
    assert not any(point.fwd_hooks for point in model.hook_dict.values())  # no hook of its own is left behind
