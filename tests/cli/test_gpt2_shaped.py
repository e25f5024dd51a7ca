"""The user's path on the shipped GPT-2-shaped model: GPT-2's BPE tokenizer (BOS prepended), a full 50,257-token
vocabulary stored compactly, and an ontology written as a user writes one (prompts of different lengths, multi-token
answers with a leading space, entities as strings), through pretrain → align → eval (swaps on) → publish --dry-run
in a shell. The answers are generated greedily (every token, then the stop) and scored exactly."""

import json
import math

import pytest
import torch
from sae_lens import SAE

from align_lens.adapter import build_model, expand_vocab, save_transformer
from align_lens.cli import main
from align_lens.worlds.bio import RELATIONS
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.bpe_model import DATA_DIR, gpt2_config, load_bpe_world
from align_lens.worlds.gpt2_tokenizer import VOCAB_SIZE, load_gpt2_tokenizer
from tests.cli.test_commands import shell

HOOK = "blocks.1.hook_resid_mid"


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A JSONL ontology written from the shipped world's first 8 people (every 6th prompt) and a text file."""
    root = tmp_path_factory.mktemp("gpt2_shaped")
    world = load_bpe_world()
    ont = world.ontology("phrasings", n_people=8)
    keys = ("prompt", "concept", "answer", "entity", "split")
    rows = [{k: getattr(e, k) for k in keys} for e in ont.examples[::6]]
    (root / "concepts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    bios = [d.text for d in world.documents(0) if d.loss_from == 0][:8]
    (root / "texts.txt").write_text("".join(t + "\n" for t in bios + [r["prompt"] for r in rows[:40]]))
    return root, rows, load_gpt2_tokenizer()


def test_gpt2_shaped_model_and_multi_token_ontology_from_a_shell(user_files):
    root, rows, tok = user_files
    user = ["--model", str(DATA_DIR), "--ontology", "concepts.jsonl"]
    steps = [
        ["pretrain", *user, "--hook", HOOK, "--d-sae", "128", "--k", "8", "--steps", "20", "--batch-size", "64"]
        + ["--out", "stage1"],
        ["align", *user, "--sae", "stage1", "--epochs", "2", "--batch-size", "32", "--out", "aligned"],
        [
            "eval",
            *user,
            "--sae",
            "aligned",
            "--stage1",
            "stage1",
            "--swap-items",
            "3",
            "--task-items",
            "12",
            "--alphas",
            "1",
            "2",
        ]
        + ["--out", "eval"],
        ["publish", "aligned", "you/gpt2-shaped", "--sae-id", HOOK, "--model", str(DATA_DIR), "--texts", "texts.txt"]
        + ["--dry-run"],
    ]
    for argv in steps:
        done = shell(*argv, cwd=root)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-3000:]}"
    assert f"you/gpt2-shaped/{HOOK}/cfg.json" in done.stdout and "nothing was uploaded" in done.stdout
    aligned = SAE.load_from_disk(root / "aligned")
    assert aligned.cfg.metadata.hook_name == HOOK and aligned.cfg.concept_names == list(RELATIONS)
    assert (root / "eval" / "eval.html").stat().st_size > 1000
    report = json.loads((root / "eval" / "eval.json").read_text())
    summary = report["summary"]
    assert all(v is None or math.isfinite(v) for v in summary.values())
    assert all(0 <= summary[k] <= 1 for k in ("binding_train", "binding_heldout", "swap_exact_best"))
    # multi-token answers (1–6 GPT-2 tokens) generated greedily and scored exactly, every token then the stop
    assert {len(tok(r["answer"], add_special_tokens=False)["input_ids"]) for r in rows} >= {2, 3, 4, 5}
    clean = report["results"]["task_accuracy"]["clean"]  # the model's own held-out-phrasing accuracy: docs/bio_bpe.md
    assert clean["n"] >= 12 and clean["exact"] >= 0.6 and clean["exact"] <= clean["first_token"]
    outputs = report["results"]["swap"]["outputs"]
    assert outputs and all(o["exact"] == (o["generated"] == o["gold"].strip()) for o in outputs)
    assert any(o["exact"] for o in outputs) and not all(o["exact"] for o in outputs)


def test_world_bio_bpe_without_a_shipped_model_names_the_training_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr("align_lens.worlds.bpe_model.DATA_DIR", tmp_path / "absent")
    monkeypatch.chdir(tmp_path)
    assert main(["pretrain", "--world", "bio-bpe", "--d-sae", "16", "--out", "x"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "benchmarks/train_bio_bpe.py" in err and "--model" in err
    assert not (tmp_path / "x").exists()


def test_world_bio_bpe_pretrains_and_aligns_on_the_shipped_folder(tmp_path, monkeypatch):
    """`--world bio-bpe` brings the model folder, its world's corpus and ontology and a middle hook."""
    shipped = tmp_path / "bio_bpe_model"
    world = BpeBioWorld(n_people=20, name_pool=8, n_cities=10, n_universities=8, n_employers=10)
    tok = load_gpt2_tokenizer()
    ids = world.vocabulary_ids(tok)
    torch.manual_seed(0)
    compact = build_model(gpt2_config(n_layers=2, d_model=32, d_head=16, n_ctx=128, d_vocab=len(ids)))
    save_transformer(expand_vocab(compact, ids, VOCAB_SIZE, tok), shipped, vocab_rows=ids)
    world.save(shipped / "world.json")
    monkeypatch.setattr("align_lens.worlds.bpe_model.DATA_DIR", shipped)
    monkeypatch.chdir(tmp_path)
    bpe = ["--world", "bio-bpe", "--n-people", "8"]
    assert main(["pretrain", *bpe, "--d-sae", "64", "--k", "4", "--steps", "5", "--out", "s1"]) == 0
    assert main(["align", *bpe, "--sae", "s1", "--epochs", "1", "--out", "al"]) == 0
    aligned = SAE.load_from_disk(tmp_path / "al")
    assert aligned.cfg.metadata.hook_name == "blocks.1.hook_resid_mid"
    assert aligned.cfg.concept_names == list(RELATIONS)
