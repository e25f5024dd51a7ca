import pytest

from align_lens.adapter import build_model
from align_lens.worlds.bio import make_world
from align_lens.worlds.tokenizer import SPECIALS, build_tokenizer, load_tokenizer


@pytest.fixture(scope="module")
def world():
    return make_world(n_people=30, seed=1)


@pytest.fixture(scope="module")
def tok_dir(world, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok")
    build_tokenizer(world.vocabulary(), path)
    return path


def test_save_reload_round_trip(world, tok_dir):
    tok = load_tokenizer(tok_dir)
    assert len(tok) == len(set(world.vocabulary()) | set(SPECIALS))
    assert [tok.pad_token_id, tok.bos_token_id, tok.eos_token_id, tok.unk_token_id] == [0, 1, 2, 3]
    again = build_tokenizer(world.vocabulary(), tok_dir.parent / "again")
    assert again.get_vocab() == tok.get_vocab()


def test_encode_decode_world_text(world, tok_dir):
    tok = load_tokenizer(tok_dir)
    for text in world.corpus(0)[:50] + world.ontology(n_people=3).prompts():
        ids = tok(text)["input_ids"]
        assert ids[0] == tok.bos_token_id
        assert len(ids) == len(text.split()) + 1
        assert tok.unk_token_id not in ids
        assert tok.decode(ids[1:]) == text
    assert tok("Q: Zzzunknown A:")["input_ids"][2] == tok.unk_token_id


def test_missing_folder_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_tokenizer_in_a_model(world, tok_dir):
    tok = load_tokenizer(tok_dir)
    cfg = dict(
        n_layers=1,
        d_model=16,
        n_heads=2,
        d_head=8,
        d_mlp=32,
        n_ctx=64,
        d_vocab=len(tok),
        act_fn="gelu",
        normalization_type="LN",
    )
    model = build_model(cfg, tokenizer=tok)
    prompt = world.ontology(n_people=1).prompts()[0]
    assert model.to_str_tokens(prompt) == ["<bos>", *prompt.split()]
    assert model.to_tokens(prompt)[0].tolist() == tok(prompt)["input_ids"]
