"""The GPT-2-shaped model: config, restricted-vocabulary scoring, packing, padding, training."""

import pytest
import torch

from align_lens.activations.gather import gather_activations
from align_lens.adapter import answer_tokens, build_model, expand_vocab, tokenize
from align_lens.evals.decoding import greedy_decode
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.bpe_model import (
    answer_accuracy,
    eval_examples,
    gpt2_config,
    pack_epoch,
    train_bpe_model,
    vocab_lookup,
)
from align_lens.worlds.gpt2_tokenizer import load_gpt2_tokenizer


@pytest.fixture(scope="module")
def world():
    return BpeBioWorld(n_people=20, name_pool=8, n_cities=10, n_universities=8, n_employers=10)


@pytest.fixture(scope="module")
def tok():
    return load_gpt2_tokenizer()


@pytest.fixture(scope="module")
def model(world, tok):
    """A randomly initialised full-vocabulary model at the fill outside the world's tokens."""
    rows = torch.tensor(world.vocabulary_ids(tok))
    torch.manual_seed(0)
    compact = build_model(gpt2_config(n_layers=2, d_model=32, n_ctx=64, d_vocab=len(rows)))
    with torch.no_grad():
        compact.b_U.normal_()  # not the default zeros, so the round trip checks b_U too
    return expand_vocab(compact, rows, 50257, tok), rows


def test_config_is_gpt2_shaped(model):
    cfg = model[0].cfg
    assert (cfg.d_vocab, cfg.act_fn, cfg.normalization_type) == (50257, "gelu_new", "LN")
    assert cfg.positional_embedding_type == "standard" and cfg.default_prepend_bos and cfg.tokenizer_prepends_bos
    assert (cfg.n_heads * cfg.d_head, cfg.d_mlp) == (cfg.d_model, 4 * cfg.d_model)


def test_restricted_argmax_equals_full_argmax(world, tok, model):
    m, rows = model
    examples = eval_examples(world, "phrasings", max_examples=24)
    restricted = answer_accuracy(m, tok, examples, rows.tolist())
    tokens = tok([e.prompt for e in examples[:4]])["input_ids"]
    for ids in tokens:
        logits = m(torch.tensor([ids]))[0, -1]
        assert int(logits.argmax()) in set(rows.tolist())
    assert set(restricted) >= {"all", "BIRTH_DATE"}


def test_packing_marks_answers_and_uses_compact_ids(world, tok):
    rows = world.vocabulary_ids(tok)
    tokens, target = pack_epoch(world, tok, vocab_lookup(rows), 0, 0, 128)
    assert tokens.min() >= 0 and tokens.max() < len(rows) and target.any()
    assert not target[:, 0].any()


@pytest.mark.parametrize("side", ["left", "right"])
def test_padded_batch_equals_one_prompt_at_a_time(world, tok, model, side):
    """Prompts of different lengths in one padded batch give each prompt's own last-token activations and
    greedy next token (left: TransformerLens shifts positions by the mask; right: read at the last real token)."""
    m, _ = model
    hook = "blocks.1.hook_resid_post"
    prompts = [e.prompt for e in eval_examples(world, "phrasings", max_examples=12)]
    lengths = [len(tok(p)["input_ids"]) for p in prompts]
    assert len(set(lengths)) > 1
    logits, cache = m.run_with_cache(prompts, padding_side=side, names_filter=hook)
    last = [-1] * len(prompts) if side == "left" else [n - 1 for n in lengths]
    for i, p in enumerate(prompts):
        single_logits, single = m.run_with_cache(p, names_filter=hook)
        torch.testing.assert_close(cache[hook][i, last[i]], single[hook][0, -1], atol=1e-5, rtol=1e-5)
        assert logits[i, last[i]].argmax() == single_logits[0, -1].argmax()


@pytest.mark.slow  # three short trainings with their final evaluation: ~30 s on a loaded 2-core machine
def test_same_seed_same_weights_and_bf16_autocast_changes_them(world, tmp_path):
    def train(out, bf16=False):
        return train_bpe_model(
            world,
            out,
            n_layers=1,
            d_model=32,
            n_ctx=128,
            steps=2,
            lr=1e-2,
            warmup=1,
            batch_size=4,
            eval_every=2,
            eval_people=3,
            eval_examples_max=12,
            final_examples_max=12,
            progress=False,
            bf16=bf16,
        )

    a, b = train(tmp_path / "a", bf16=True), train(tmp_path / "b", bf16=True)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), k
    fp32 = train(tmp_path / "fp32").state_dict()
    assert any(not torch.equal(va, fp32[k]) for k, va in a.state_dict().items())


def test_library_helpers_batch_prompts_of_different_lengths_like_single_prompts(world, tok, model):
    """The adapter's right-padded gathering and greedy decoding read each prompt's own last token on GPT-2's
    tokenizer (BOS once, answers without BOS)."""
    m, _ = model
    examples = eval_examples(world, "people", max_examples=10)
    prompts = [e.prompt for e in examples]
    hook = "blocks.1.hook_resid_post"
    batched = gather_activations(m, prompts, hook, batch_size=len(prompts))
    single = torch.cat([gather_activations(m, [p], hook) for p in prompts])
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=1e-5)
    assert greedy_decode(m, prompts, 4, batch_size=len(prompts)) == [greedy_decode(m, [p], 4)[0] for p in prompts]
    assert tokenize(m, prompts[:1])[0].tolist() == tok(prompts[0])["input_ids"]
    answer = examples[0].answer or ""
    assert answer_tokens(m, answer) == tok(answer, add_special_tokens=False)["input_ids"]
