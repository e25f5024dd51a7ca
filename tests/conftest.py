"""Shared fixtures: seeding, a tiny word-level tokenizer and a random HookedTransformer."""

import functools
import os
import random
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest
import torch

import align_lens  # noqa: F401  (registers the architecture)
from align_lens import AlignConfig, Runtime, Stage1Config, align, pretrain_sae
from align_lens.activations import gather_activations
from align_lens.adapter import build_model

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
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>", unk_token="<unk>"
    )
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
                records.append(
                    dict(
                        prompt=frame.format(c=c, w=who),
                        concept=c,
                        answer=who,
                        entity=who,
                        split=split,
                        template=f"{c}/{j}",
                    )
                )
    return Ontology.from_records(records, concepts)


# ---- a trained base model + aligned SAE, shared by the evaluation, intervention and analysis tests -----
N_PEOPLE = 60


@pytest.fixture(autouse=True)
def one_thread():
    """The models here are tiny: one intra-op thread avoids oversubscription on a busy machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.lru_cache(maxsize=1)
def _build() -> dict:
    n_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _build_inner()
    finally:
        torch.set_num_threads(n_threads)


def _build_inner() -> dict:
    from align_lens.worlds.base_model import DATA_DIR, load_base_model, load_base_world, train_base_model
    from align_lens.worlds.bio import BioWorld

    torch.manual_seed(0)
    path = os.environ.get("ALIGN_LENS_TEST_MODEL")
    if path is None and (DATA_DIR / "tl_config.json").exists():
        path = str(DATA_DIR)
    if path is not None:
        model, world = load_base_model(path), load_base_world(path)
    else:  # no shipped model: a tiny one (slow, only in a bare checkout)
        world = BioWorld(n_people=60, seed=3, n_cities=12, n_universities=12, n_majors=12, n_employers=12)
        out = Path(os.environ.get("TMPDIR", "/tmp")) / "align_lens_test_model"
        model = train_base_model(
            world,
            out,
            n_layers=2,
            d_model=64,
            n_heads=4,
            d_head=16,
            d_mlp=256,
            steps=800,
            lr=3e-3,
            warmup=100,
            eval_every=10_000,
            progress=False,
        )
    ont = world.ontology(N_PEOPLE)
    hook = f"blocks.{model.cfg.n_layers // 2}.hook_resid_pre"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        train = gather_activations(model, ont.prompts("train"), hook, batch_size=256)
        heldout = gather_activations(model, ont.prompts("heldout"), hook, batch_size=256)
        s1 = Stage1Config(8 * model.cfg.d_model, "topk", k=16, steps=300, batch_size=256, hook_name=hook)
        sae = pretrain_sae(train, s1)
        aligned = align(sae, ont, activations=train, config=AlignConfig(epochs=10, runtime=Runtime(progress=False)))
    rng = random.Random(0)
    held = ont.select("heldout")
    return {
        "model": model,
        "world": world,
        "ontology": ont,
        "hook": hook,
        "train_acts": train,
        "heldout_acts": heldout,
        "sae": sae,
        "aligned": aligned,
        "heldout_sample": rng.sample(held, 60),
    }


@pytest.fixture(scope="session")
def trained():
    return _build()
