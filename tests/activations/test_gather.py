import pytest
import torch

from align_lens.activations.gather import gather_activations, gather_token_activations

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
