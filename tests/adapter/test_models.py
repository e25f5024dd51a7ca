"""TransformerLens model folders: saved and loaded bit-exactly, without the Hub."""

import pytest
import torch

from align_lens.adapter import load_transformer, save_transformer


def test_model_save_load_identical_logits(tiny_model, tmp_path):
    save_transformer(tiny_model, tmp_path / "m")
    back = load_transformer(tmp_path / "m")
    toks = tiny_model.to_tokens("Q: what is the gamma of bob A:")
    torch.testing.assert_close(back(toks), tiny_model(toks), atol=0, rtol=0)
    with pytest.raises(FileNotFoundError, match="save_transformer"):
        load_transformer(tmp_path)
