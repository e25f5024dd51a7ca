"""Shared fixtures: seeding, a tiny word-level tokenizer and a random HookedTransformer."""

import os
import random

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import align_lens  # noqa: F401  (registers the architecture)
from align_lens.activations import build_model

TINY_WORDS = "Q: A: is the of who what alpha beta gamma delta ann bob cat dan eve fay gus hal ivy jon kim".split()


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    random.seed(0)


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(["<pad>", "<bos>", "<eos>", "<unk>", *TINY_WORDS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<bos> $A", special_tokens=[("<bos>", 1)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>")
    path = tmp_path_factory.mktemp("tok")
    fast.save_pretrained(path)
    return PreTrainedTokenizerFast.from_pretrained(path)


@pytest.fixture(scope="session")
def tiny_model(tiny_tokenizer):
    torch.manual_seed(0)
    cfg = dict(n_layers=2, d_model=32, n_ctx=32, d_head=8, n_heads=4, d_mlp=64, act_fn="gelu", normalization_type="LN")
    return build_model(cfg, tokenizer=tiny_tokenizer).eval()


@pytest.fixture(scope="session")
def tiny_ontology():
    """Four concepts cued by a keyword; heldout examples use 21 unseen two-word people."""
    from align_lens import Ontology

    concepts = ["alpha", "beta", "gamma", "delta"]
    names = "ann bob cat dan eve fay gus hal ivy jon kim".split()
    people = [f"{a} {b}" for a in names for b in names]
    records = []
    for i, who in enumerate(people):
        for c in concepts:
            for j, frame in enumerate(["Q: {w} {c} {c} A:", "Q: what is {w} {c} {c} A:", "Q: {c} the {w} {c} A:"]):
                split = "heldout" if i >= 100 else "train"
                records.append(dict(prompt=frame.format(c=c, w=who), concept=c, answer=who, entity=who, split=split, template=f"{c}/{j}"))
    return Ontology.from_records(records, concepts)
