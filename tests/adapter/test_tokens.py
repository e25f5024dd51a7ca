"""Tokenising (never truncated), right padding, answer tokens and decoding."""

import pytest
import torch

from align_lens.adapter import answer_tokens, decode_text, pad_right, tokenize


def test_pad_right_keeps_each_sequence_at_the_front():
    padded, lengths = pad_right([torch.tensor([5, 6, 7]), torch.tensor([8])], pad_id=0)
    assert padded.tolist() == [[5, 6, 7], [8, 0, 0]] and lengths.tolist() == [3, 1]


def test_tokenize_prepends_bos_and_refuses_a_prompt_longer_than_the_context(tiny_model):
    (seq,) = tokenize(tiny_model, ["Q: alpha A:"])
    assert seq[0].item() == tiny_model.tokenizer.bos_token_id and len(seq) == 4
    with pytest.raises(ValueError, match="prompt 1 has .* tokens plus 2 to generate"):
        tokenize(tiny_model, ["ann", " ".join(["ann"] * 31)], room=2)


def test_answer_tokens_decode_back_to_the_answer(tiny_model):
    ids = answer_tokens(tiny_model, "  bob ")
    assert ids == [tiny_model.to_single_token("bob")]
    assert decode_text(tiny_model, ids).strip() == "bob" and decode_text(tiny_model, []) == ""
