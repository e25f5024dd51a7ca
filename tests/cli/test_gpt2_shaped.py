"""The user's path on a GPT-2-shaped model: GPT-2's BPE tokenizer (BOS prepended), a full 50,257-token vocabulary
stored compactly, and an ontology written as a user writes one (prompts of different lengths, multi-token answers
with a leading space, entities as strings), through pretrain → align → eval (swaps on) → publish --dry-run in a
shell. The model is trained for a few seconds to answer its ontology, so the answers generated greedily (every
token, then the stop) and scored exactly can be checked."""

import json
import math
import random

import pytest
import torch
import torch.nn.functional as F
from sae_lens import SAE

from align_lens.adapter import build_model, expand_vocab, save_transformer
from align_lens.cli import main
from align_lens.worlds.bio import RELATIONS
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.bpe_model import gpt2_config
from align_lens.worlds.gpt2_tokenizer import VOCAB_SIZE, load_gpt2_tokenizer
from tests.cli.test_commands import shell

HOOK = "blocks.1.hook_resid_mid"
FIRST = ["Anna", "Boris", "Celine", "Dmitri", "Eleanor", "Farouk", "Greta", "Hiroshi"]
LAST = ["Quill", "Stavropoulos", "Vasquez"]
CITIES = [" Port Tourru", " New Dairsi Falls", " Lake Ombrel", " Kestwick Springs"]
DATES = [" April 2, 1944", " June 17, 1973", " March 30, 1958", " October 9, 1981"]
MAJORS = [" Marine Biology", " Applied Mathematics", " Art History", " Comparative Literature"]
FRAMES = {
    "BIRTH_CITY": ["Q: Where was {n} born?\nA:", "Question: In which city did {n} come into the world?\nAnswer:"],
    "BIRTH_DATE": ["Q: When was {n} born?\nA:", "{n} was born on which date? Answer:"],
    "MAJOR": ["Q: What did {n} study?\nA:", "Question: What was the major of {n} at university?\nAnswer:"],
}


def _ontology() -> list[dict]:
    rng = random.Random(0)
    rows = []
    for i, name in enumerate(f"{a} {b}" for a in FIRST for b in LAST):
        values = {"BIRTH_CITY": rng.choice(CITIES), "BIRTH_DATE": rng.choice(DATES), "MAJOR": rng.choice(MAJORS)}
        for concept, frames in FRAMES.items():
            for j, frame in enumerate(frames):
                split = "heldout" if j == 1 and i % 4 == 0 else "train"
                rows.append(
                    {"prompt": frame.format(n=name), "concept": concept, "answer": values[concept], "entity": name}
                    | {"split": split}
                )
    return rows


def _trained_model(rows: list[dict], tok, steps: int = 45):
    """A 2-layer GPT-2-shaped model on the ontology's token ids, trained on every prompt's answer and stop, then
    expanded to GPT-2's full vocabulary."""
    texts = [(tok(r["prompt"])["input_ids"], tok(r["answer"] + "<|endoftext|>")["input_ids"][1:]) for r in rows]
    ids = sorted({i for p, a in texts for i in p + a})
    lookup = {g: i for i, g in enumerate(ids)}
    width = max(len(p) + len(a) for p, a in texts)
    tokens, target = torch.zeros(len(texts), width, dtype=torch.long), torch.zeros(len(texts), width)
    for i, (p, a) in enumerate(texts):
        tokens[i, : len(p) + len(a)] = torch.tensor([lookup[t] for t in p + a])
        target[i, len(p) : len(p) + len(a)] = 1
    torch.manual_seed(0)
    compact = build_model(gpt2_config(n_layers=2, d_model=64, d_head=16, n_ctx=64, d_vocab=len(ids)))
    opt = torch.optim.AdamW(compact.parameters(), lr=5e-3)
    for _ in range(steps):
        logits = compact(tokens)[:, :-1]
        ce = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")
        loss = (ce * target[:, 1:]).sum() / target.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return expand_vocab(compact, ids, VOCAB_SIZE, tok), ids


@pytest.fixture(scope="module")
def user_files(tmp_path_factory):
    """A briefly trained GPT-2-shaped model folder (compact storage) and a multi-token JSONL ontology."""
    root = tmp_path_factory.mktemp("gpt2_shaped")
    rows = _ontology()
    (root / "concepts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "texts.txt").write_text("".join(r["prompt"] + r["answer"] + "\n" for r in rows[:40]))
    tok = load_gpt2_tokenizer()
    model, ids = _trained_model(rows, tok)
    save_transformer(model, root / "model", vocab_rows=ids)
    return root, rows, tok


def test_gpt2_shaped_model_and_multi_token_ontology_from_a_shell(user_files):
    root, rows, tok = user_files
    user = ["--model", "model", "--ontology", "concepts.jsonl"]
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
        ["publish", "aligned", "you/gpt2-shaped", "--sae-id", HOOK, "--model", "model", "--texts", "texts.txt"]
        + ["--dry-run"],
    ]
    for argv in steps:
        done = shell(*argv, cwd=root)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-3000:]}"
    assert f"you/gpt2-shaped/{HOOK}/cfg.json" in done.stdout and "nothing was uploaded" in done.stdout
    aligned = SAE.load_from_disk(root / "aligned")
    assert aligned.cfg.metadata.hook_name == HOOK and aligned.cfg.concept_names == list(FRAMES)
    assert (root / "eval" / "eval.html").stat().st_size > 1000
    report = json.loads((root / "eval" / "eval.json").read_text())
    summary = report["summary"]
    assert all(v is None or math.isfinite(v) for v in summary.values())
    assert all(0 <= summary[k] <= 1 for k in ("binding_train", "binding_heldout", "swap_exact_best"))
    # multi-token answers (2–5 GPT-2 tokens) generated greedily and scored exactly, every token then the stop
    assert {len(tok(r["answer"], add_special_tokens=False)["input_ids"]) for r in rows} >= {2, 5}
    clean = report["results"]["task_accuracy"]["clean"]
    assert clean["n"] >= 12 and clean["exact"] >= 0.9 and clean["exact"] <= clean["first_token"]
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
