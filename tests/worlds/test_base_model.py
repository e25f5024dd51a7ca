import json
import shutil

import pytest
import torch

from align_lens.adapter import load_transformer, save_transformer
from align_lens.worlds.base_model import (
    EVAL_FILE,
    evaluate_base_model,
    load_base_model,
    load_base_world,
    lr_at,
    pack_epoch,
    train_base_model,
)
from align_lens.worlds.bio import RELATIONS, make_world
from align_lens.worlds.tokenizer import build_tokenizer

TINY = dict(
    n_layers=1,
    d_model=32,
    n_heads=2,
    d_head=16,
    d_mlp=64,
    n_ctx=64,
    batch_size=8,
    warmup=5,
    checkpoint_every=10,
    eval_every=30,
    eval_people=10,
    threads=1,
    progress=False,
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    world = make_world(n_people=50, seed=0)
    out = tmp_path_factory.mktemp("run")
    model = train_base_model(world, out, steps=30, seed=0, **TINY)
    return world, out, model


def test_pack_epoch_masks_answers_and_bios(tmp_path):
    world = make_world(n_people=5, seed=0)
    tok = build_tokenizer(world.vocabulary(), tmp_path)
    tokens, target = pack_epoch(world, tok, epoch=0, seed=0, n_ctx=64)
    words = tok.convert_ids_to_tokens(tokens.flatten().tolist())
    marked = [w for w, t in zip(words, target.flatten().tolist()) if t]
    assert "<bos>" not in marked and "<pad>" not in marked and "Q:" not in marked and "A:" not in marked
    n_real = sum(len(t.split()) for t in world.corpus(0))
    n_qa_prompt = sum(d.loss_from for d in world.documents(0))
    assert target.sum().item() == n_real - n_qa_prompt
    assert torch.equal(pack_epoch(world, tok, 0, 0, 64)[0], tokens)


def test_lr_schedule():
    assert lr_at(0, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert lr_at(10, 100, 1.0, 10, 0.1) == pytest.approx(1.0)
    assert lr_at(100, 100, 1.0, 10, 0.1) == pytest.approx(0.1)
    assert 0.1 < lr_at(55, 100, 1.0, 10, 0.1) < 1.0


def test_tiny_run_writes_model_eval_and_checkpoints(tiny_run):
    world, out, model = tiny_run
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step_000020.pt", "step_000030.pt"]
    assert (out / "world.json").exists() and (out / "train_log.jsonl").exists()
    ev = json.loads((out / EVAL_FILE).read_text())
    assert set(ev) == {"train", "heldout"} and set(ev["train"]) == {*RELATIONS, "all"}
    assert all(0 <= v["full"] <= v["first_token"] <= 1 for v in ev["heldout"].values())
    assert load_base_world(out).people == world.people


def test_save_load_identical_logits(tiny_run, tmp_path):
    world, out, model = tiny_run
    tokens = model.to_tokens(world.ontology(n_people=2).prompts()[:4])
    save_transformer(model, tmp_path)
    again = load_transformer(tmp_path)
    assert torch.equal(again(tokens), model(tokens))
    assert torch.equal(load_base_model(out)(tokens), model(tokens))


def test_resume_from_checkpoint_matches_uninterrupted(tiny_run, tmp_path):
    world, out, model = tiny_run
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(out / "checkpoints" / "step_000020.pt", tmp_path / "checkpoints")
    row = json.loads((out / "train_log.jsonl").read_text().splitlines()[-1])  # as an interrupted run leaves it:
    (tmp_path / "train_log.jsonl").write_text(f"{json.dumps(row | {'step': 20})}\n{json.dumps(row)}\n")  # a row past 20
    resumed = train_base_model(world, tmp_path, steps=30, seed=0, **TINY)
    for (name, a), b in zip(model.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    at_20 = torch.load(tmp_path / "checkpoints" / "step_000020.pt", weights_only=True)
    assert not torch.equal(at_20["model"]["embed.W_E"], model.W_E)  # the comparison above is not vacuous
    logged = [json.loads(line) for line in (tmp_path / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == [20, 30] and logged[0] == row | {"step": 20}  # the old row 30 dropped
    assert logged[1]["wall_s"] >= at_20["wall_s"] > 0  # training time counts on from the checkpoint


def test_resume_with_other_settings_raises(tiny_run, tmp_path):
    world, out, _ = tiny_run
    shutil.copytree(out / "checkpoints", tmp_path / "checkpoints")
    with pytest.raises(ValueError, match=r"differs in settings.seed \(checkpoint: 0, now: 1\)"):
        train_base_model(world, tmp_path, steps=30, seed=1, **TINY)


@pytest.fixture
def one_thread():
    """A tiny model on a shared CPU runs faster on one thread than on two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_shipped_model_answers_train_and_heldout_questions(one_thread):
    model, world = load_base_model(), load_base_world()
    for split, floor in (("train", 0.99), ("heldout", 0.95)):
        acc = evaluate_base_model(model, world, split, n_people=100)
        low = {r: a["full"] for r, a in acc.items() if not a["full"] >= floor}
        assert not low, f"{split} accuracy below {floor}: {low}"
