"""Compact vocabulary storage: a full-vocabulary model saved as its used rows and loaded back as an ordinary
model, bit-exact after fp16."""

import pytest
import torch
from transformer_lens import HookedTransformer

from align_lens.adapter import (
    COMPACT_WEIGHTS,
    MODEL_WEIGHTS,
    UNUSED_LOGIT_BIAS,
    build_model,
    expand_vocab,
    load_transformer,
    save_transformer,
)
from align_lens.worlds.gpt2_tokenizer import VOCAB_SIZE, load_gpt2_tokenizer


@pytest.fixture(scope="module")
def model():
    """A random GPT-2-shaped model using 40 of GPT-2's ids (BOS among them); every other token at the fill."""
    tok = load_gpt2_tokenizer()
    rows = torch.tensor(sorted({*range(300, 339), tok.bos_token_id}))
    torch.manual_seed(0)
    cfg = dict(n_layers=1, d_model=16, d_head=8, n_heads=2, d_mlp=64, n_ctx=32, d_vocab=len(rows), act_fn="gelu_new")
    compact = build_model({**cfg, "normalization_type": "LN", "default_prepend_bos": True})
    with torch.no_grad():
        compact.b_U.normal_()  # not the default zeros, so the round trip checks b_U too
    return expand_vocab(compact, rows, VOCAB_SIZE, tok), rows


def test_unused_tokens_sit_at_the_fill(model):
    m, rows = model
    unused = torch.ones(VOCAB_SIZE, dtype=torch.bool)
    unused[rows] = False
    assert not m.W_E[unused].any() and not m.W_U[:, unused].any()
    assert (m.b_U[unused] == UNUSED_LOGIT_BIAS).all() and m.W_E[rows].abs().sum(-1).gt(0).all()


def test_round_trip_is_bit_exact_after_fp16_and_gives_an_ordinary_model(model, tmp_path):
    m, rows = model
    save_transformer(m, tmp_path, vocab_rows=rows.tolist())
    assert (tmp_path / COMPACT_WEIGHTS).stat().st_size < 2 * 4 * sum(p.numel() for p in m.parameters()) / 50
    loaded = load_transformer(tmp_path)
    assert isinstance(loaded, HookedTransformer) and loaded.cfg.d_vocab == VOCAB_SIZE
    assert loaded.cfg.dtype == torch.float32 and loaded.W_U.shape == (16, VOCAB_SIZE)
    want = {k: (v.half().float() if v.is_floating_point() else v) for k, v in m.state_dict().items()}
    got = loaded.state_dict()
    assert want.keys() == got.keys()
    for k in want:
        assert torch.equal(want[k], got[k]), k
    assert loaded.tokenizer is not None and loaded.tokenizer(" was")["input_ids"] == [50256, 373]


def test_saving_one_format_over_the_other_leaves_one_weights_file(model, tmp_path):
    m, rows = model
    save_transformer(m, tmp_path)
    save_transformer(m, tmp_path, vocab_rows=rows.tolist())
    assert (tmp_path / COMPACT_WEIGHTS).exists() and not (tmp_path / MODEL_WEIGHTS).exists()
    save_transformer(m, tmp_path)
    assert (tmp_path / MODEL_WEIGHTS).exists() and not (tmp_path / COMPACT_WEIGHTS).exists()
    torch.testing.assert_close(load_transformer(tmp_path).W_E, m.W_E, atol=0, rtol=0)


def test_save_refuses_rows_that_miss_a_used_token(model, tmp_path):
    m, rows = model
    with pytest.raises(ValueError, match="not at the fill"):
        save_transformer(m, tmp_path, vocab_rows=rows[1:].tolist())
