"""Word-level tokenizer for a synthetic world, saved to a folder and reloaded as a fast HF tokenizer.

The round trip through disk matters: TransformerLens' `set_tokenizer` reads `name_or_path`, which an
in-memory `PreTrainedTokenizerFast` lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer
from tokenizers.models import WordLevel
from tokenizers.pre_tokenizers import WhitespaceSplit
from tokenizers.processors import TemplateProcessing
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)


def build_tokenizer(words: Iterable[str], path: str | Path) -> PreTrainedTokenizerFast:
    """Write a tokenizer over `words` (ids: <pad> 0, <bos> 1, <eos> 2, <unk> 3, then words) to `path`; load it back.

    Encoding splits on whitespace and prepends <bos>.
    """
    vocab = {t: i for i, t in enumerate(SPECIALS)}
    for w in sorted(set(words) - set(SPECIALS)):
        vocab[w] = len(vocab)
    tok = Tokenizer(WordLevel(vocab, unk_token=UNK))
    tok.pre_tokenizer = WhitespaceSplit()
    tok.post_processor = TemplateProcessing(single=f"{BOS} $A", special_tokens=[(BOS, vocab[BOS])])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, pad_token=PAD, unk_token=UNK)
    fast.save_pretrained(str(path))
    return load_tokenizer(path)


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerFast:
    """Load a folder written by `build_tokenizer`."""
    if not (Path(path) / "tokenizer.json").exists():
        raise FileNotFoundError(f"{path} has no tokenizer.json; write it with build_tokenizer().")
    return PreTrainedTokenizerFast.from_pretrained(str(path))
