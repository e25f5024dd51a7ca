"""GPT-2's byte-level BPE tokenizer, built offline from the shipped `encoder.json` and `vocab.bpe`.

The ids equal GPT-2's. As TransformerLens sets up GPT-2, `<|endoftext|>` (id 50256) is BOS, EOS, UNK and PAD;
encoding prepends it (`add_bos_token=True`), so `tokenizer(" was born")` is `[50256, 373, 4642]`.
"""

from __future__ import annotations

from pathlib import Path

from transformers import GPT2Tokenizer  # the fast (tokenizers) class; GPT2TokenizerFast is its alias

BPE_DIR = Path(__file__).parent / "data" / "gpt2_bpe"
ENDOFTEXT = "<|endoftext|>"
ENDOFTEXT_ID = 50256
VOCAB_SIZE = 50257


def load_gpt2_tokenizer(path: str | Path = BPE_DIR) -> GPT2Tokenizer:
    """GPT-2's tokenizer from a folder holding `encoder.json` and `vocab.bpe` (default: the shipped copy).

    The folder is the tokenizer's `name_or_path`, which TransformerLens' `set_tokenizer` reloads from.
    """
    path = Path(path)
    missing = [f for f in ("encoder.json", "vocab.bpe") if not (path / f).exists()]
    if missing:
        raise FileNotFoundError(f"{path} lacks {missing}; give the folder holding GPT-2's encoder.json and vocab.bpe.")
    return GPT2Tokenizer.from_pretrained(
        str(path),
        vocab_file=str(path / "encoder.json"),
        merges_file=str(path / "vocab.bpe"),
        add_bos_token=True,
        bos_token=ENDOFTEXT,
        eos_token=ENDOFTEXT,
        unk_token=ENDOFTEXT,
        pad_token=ENDOFTEXT,
    )
