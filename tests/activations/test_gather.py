import pytest
import torch

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.adapter import attach_sae, load_transformer, residual_hooks, resolve_hook, save_transformer, stop_layer

PROMPTS = ["Q: alpha of ann A:", "Q: beta A:", "Q: what is the gamma of bob A:", "ann"]
HOOK = "blocks.1.hook_resid_post"


def test_batched_equals_one_by_one(tiny_model):
    batched = gather_activations(tiny_model, PROMPTS, HOOK, batch_size=3)
    single = torch.cat([gather_activations(tiny_model, [p], HOOK) for p in PROMPTS])
    assert batched.shape == (4, 32)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("side", ["left", "right"])
def test_last_position_ignores_tokenizer_padding_side(tiny_model, side):
    old = tiny_model.tokenizer.padding_side
    tiny_model.tokenizer.padding_side = side
    try:
        got = gather_activations(tiny_model, PROMPTS, HOOK, batch_size=4)
    finally:
        tiny_model.tokenizer.padding_side = old
    _, cache = tiny_model.run_with_cache(PROMPTS[2])
    torch.testing.assert_close(got[2], cache[HOOK][0, -1], atol=1e-5, rtol=0)


def test_int_and_callable_positions(tiny_model):
    _, cache = tiny_model.run_with_cache(PROMPTS[0])
    first = gather_activations(tiny_model, PROMPTS[:1], HOOK, position=1)
    torch.testing.assert_close(first[0], cache[HOOK][0, 1])
    q_token = tiny_model.to_single_token("Q:")
    by_fn = gather_activations(tiny_model, PROMPTS[:1], HOOK, position=lambda toks: int((toks == q_token).nonzero()[0]))
    torch.testing.assert_close(by_fn[0], cache[HOOK][0, 1])
    with pytest.raises(IndexError, match="outside a prompt"):
        gather_activations(tiny_model, PROMPTS[:1], HOOK, position=40)


def test_unknown_hook_lists_close_names(tiny_model):
    with pytest.raises(KeyError, match="blocks.1.hook_resid_post"):
        gather_activations(tiny_model, PROMPTS, "blocks.1.resid_post")
    assert resolve_hook(tiny_model, HOOK) == HOOK


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


def test_token_activations_skip_padding_and_bos(tiny_model):
    acts = gather_token_activations(tiny_model, PROMPTS, HOOK, batch_size=2)
    n_tokens = sum(len(tiny_model.to_tokens(p)[0]) - 1 for p in PROMPTS)
    assert acts.shape == (n_tokens, 32)


def test_nan_activations_rejected(tiny_model):
    def poison(x, hook):
        return x * float("nan")

    with tiny_model.hooks(fwd_hooks=[(HOOK, poison)]):
        with pytest.raises(ValueError, match="NaN"):
            gather_activations(tiny_model, PROMPTS, HOOK)


def test_model_save_load_identical_logits(tiny_model, tmp_path):
    save_transformer(tiny_model, tmp_path / "m")
    back = load_transformer(tmp_path / "m")
    toks = tiny_model.to_tokens(PROMPTS[2])
    torch.testing.assert_close(back(toks), tiny_model(toks), atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="save_transformer"):
        load_transformer(tmp_path)


def test_attach_sae_checks_hook_and_width(tiny_model):
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=8))
    with pytest.raises(ValueError, match="hook_name"):
        attach_sae(tiny_model, sae)
    sae.cfg.metadata.hook_name = "blocks.9.hook_resid_post"
    with pytest.raises(KeyError, match="not in the model"):
        attach_sae(tiny_model, sae)
    sae.cfg.metadata.hook_name = HOOK
    with pytest.raises(ValueError, match="d_in 16 does not match"):
        attach_sae(tiny_model, sae)
