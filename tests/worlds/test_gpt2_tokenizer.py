"""The shipped GPT-2 BPE files give GPT-2's ids, BOS first, and load into a HookedTransformer offline."""

import hashlib

from align_lens.adapter import build_model
from align_lens.worlds.bpe_model import gpt2_config
from align_lens.worlds.gpt2_tokenizer import BPE_DIR, load_gpt2_tokenizer

GPT2_IDS = {
    " was": 373,
    " born": 4642,
    " in": 287,
    "<|endoftext|>": 50256,
    " the": 262,
    "The": 464,
    " of": 286,
    " and": 290,
    ",": 11,
    ".": 13,
    " is": 318,
    "Hello": 15496,
    " world": 995,
}


def test_ids_are_gpt2s():
    tok = load_gpt2_tokenizer()
    assert len(tok) == 50257
    for text, id_ in GPT2_IDS.items():
        assert tok(text, add_special_tokens=False)["input_ids"] == [id_], text


def test_bos_is_prepended_and_special_tokens_are_endoftext():
    tok = load_gpt2_tokenizer()
    assert tok(" was born in")["input_ids"] == [50256, 373, 4642, 287]
    assert [tok.bos_token_id, tok.eos_token_id, tok.pad_token_id, tok.unk_token_id] == [50256] * 4


def test_files_match_their_provenance_note():
    note = (BPE_DIR / "PROVENANCE.md").read_text()
    for name in ("encoder.json", "vocab.bpe"):
        assert hashlib.sha256((BPE_DIR / name).read_bytes()).hexdigest() in note
    assert "MIT License" in (BPE_DIR / "LICENSE").read_text()


def test_hooked_transformer_takes_it_and_prepends_bos_once():
    model = build_model(gpt2_config(n_layers=1, d_model=32, n_ctx=16), tokenizer=load_gpt2_tokenizer())
    assert model.cfg.tokenizer_prepends_bos
    assert model.to_tokens(" was born").tolist() == [[50256, 373, 4642]]
