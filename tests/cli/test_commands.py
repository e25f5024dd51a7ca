"""The `align-lens` command line on a user's own model (saved with `save_transformer`, no world file) and ontology,
run from a shell; and its usage errors: one line naming the fix, exit status 2, no traceback."""

import argparse
import functools
import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from sae_lens import SAE

from align_lens import AlignedSAE
from align_lens.adapter import save_transformer
from align_lens.cli import build_parser, main
from align_lens.cli.options import default_of
from align_lens.evals.evaluate import EvalConfig
from align_lens.training.config import AlignConfig, Runtime, Stage1Config
from align_lens.worlds.demo import DemoConfig

PEOPLE = [f"{a} {b}" for a in "ann bob cat dan eve".split() for b in "fay gus hal ivy".split()]
CONCEPTS = ["alpha", "beta", "gamma"]
HOOK = "blocks.0.hook_resid_post"


def _cli() -> list[str]:
    script = Path(sys.executable).parent / "align-lens"
    return [str(script)] if script.exists() else [sys.executable, "-m", "align_lens.cli"]


def shell(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = os.environ | {"HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run([*_cli(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _answer(who: str, concept: str) -> str:
    return {"alpha": who.split()[0], "beta": who.split()[1], "gamma": "kim"}[concept]


@pytest.fixture(scope="module")
def user_files(tiny_model, tmp_path_factory):
    """A folder written by save_transformer (no world.json) and a three-concept JSONL ontology."""
    root = tmp_path_factory.mktemp("user")
    save_transformer(tiny_model, root / "model")
    rows = [
        {
            "prompt": f"Q: {frame.format(w=who, c=c)} A:",
            "concept": c,
            "answer": _answer(who, c),
            "entity": who,
            "split": split,
        }
        for i, who in enumerate(PEOPLE)
        for c in CONCEPTS
        for frame, split in [("{w} {c} {c}", "train"), ("what is {w} {c}", "train" if i < 15 else "heldout")]
    ]
    (root / "concepts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "texts.txt").write_text("".join(f"Q: what is {who} the alpha A:\n" for who in PEOPLE))
    assert not (root / "model" / "world.json").exists()
    return root


@pytest.mark.slow  # the fast suite runs the same four commands from a shell in tests/cli/test_gpt2_shaped.py
def test_user_model_pretrain_align_eval_publish_from_a_shell(user_files):
    root = user_files
    model = ["--model", "model", "--ontology", "concepts.jsonl"]
    steps = [
        ["pretrain", *model, "--hook", HOOK, "--d-sae", "64", "--k", "4", "--steps", "30", "--batch-size", "64"],
        ["align", *model, "--sae", "stage1", "--epochs", "3", "--batch-size", "32", "--out", "aligned"],
        ["eval", *model, "--sae", "aligned", "--stage1", "stage1", "--swap-items", "2", "--task-items", "6"],
        ["publish", "aligned", "you/tiny-alignsae", "--sae-id", HOOK, "--model", "model", "--texts", "texts.txt"]
        + ["--dry-run"],
    ]
    outs = {"pretrain": ["--out", "stage1"], "eval": ["--out", "eval"]}
    for argv in steps:
        done = shell(*argv, *outs.get(argv[0], []), cwd=root)
        assert done.returncode == 0, f"{argv[0]}: {done.stderr[-2000:]}"
    aligned = SAE.load_from_disk(root / "aligned")
    assert isinstance(aligned, AlignedSAE) and aligned.cfg.concept_names == CONCEPTS
    assert aligned.cfg.metadata.hook_name == HOOK
    report = json.loads((root / "eval" / "eval.json").read_text())
    assert report["results"]["concepts"] == CONCEPTS and report["summary"]["binding_train"] > 1 / len(CONCEPTS)
    assert (root / "eval" / "eval.html").stat().st_size > 1000
    assert f"you/tiny-alignsae/{HOOK}/cfg.json" in done.stdout and "nothing was uploaded" in done.stdout
    assert "activations=" not in done.stderr  # the plain TopK export was measured on --texts (no warning)
    assert not [p for p in root.iterdir() if "partial" in p.name]  # staging folders are swapped in


@pytest.mark.slow  # a process start (~6 s CPU); the fast suite checks every command in-process below
def test_device_cuda_without_cuda_fails_in_one_line_before_any_work(tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    done = shell("demo", "--device", "cuda", "--out", "demo", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "CUDA is not available" in done.stderr and "--device cpu" in done.stderr
    assert not list(tmp_path.iterdir())


def test_offline_model_name_fails_in_one_line(tmp_path, capsys, monkeypatch):
    argv = ["pretrain", "--model", "gpt2", "--hook", HOOK, "--texts", "t.txt", "--d-sae", "8", "--k", "4", "--out", "o"]
    (tmp_path / "t.txt").write_text("hello\n")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "HF_HUB_OFFLINE" in err and "Traceback" not in err


def _error_lines(stderr: str) -> int:
    """Lines of stderr as a terminal shows them, not counting finished progress bars."""
    visible = [line.split("\r")[-1] for line in stderr.split("\n")]
    return len([line for line in visible if line.strip() and "%|" not in line])


# ---- usage errors: (argv, words the one-line message must contain) ------------------------------
def _usage_cases(root: Path) -> list[tuple[list[str], list[str]]]:
    user = ["--model", str(root / "model"), "--ontology", str(root / "concepts.jsonl")]
    pre = ["pretrain", *user, "--hook", HOOK, "--out", str(root / "x")]
    bio = ["--world", "bio"]
    aligned_sae, stage1_sae = str(root / "usage_aligned"), str(root / "usage_stage1")
    return [
        ([*pre, "--d-sae", "16", "--batch-size", "0"], ["--batch-size", "positive"]),
        ([*pre, "--d-sae", "0"], ["--d-sae", "positive"]),
        ([*pre, "--d-sae", "8", "--k", "9"], ["--k 9", "--d-sae 8"]),
        ([*pre, "--d-sae", "16", "--steps", "0"], ["--steps", "positive"]),
        ([*pre, "--d-sae", "16", "--lr", "nan"], ["--lr", "finite"]),
        ([*pre, "--d-sae", "16", "--batch-size", "100000"], ["--batch-size", "token activations"]),
        (["pretrain", *user, "--d-sae", "16", "--out", "x"], ["--hook", "blocks.0.hook_resid_pre"]),
        (["pretrain", "--model", str(root / "model"), "--hook", HOOK, "--d-sae", "16", "--out", "x"], ["--texts"]),
        ([*pre[:-2], "--d-sae", "16", "--out", str(root / "concepts.jsonl")], ["--out", "is a file"]),
        (["pretrain", "--d-sae", "16", "--n-people", "0", "--out", "x"], ["--n-people", "positive"]),
        (["pretrain", "--d-sae", "16", "--n-people", "-5", "--out", "x"], ["--n-people", "positive"]),
        (["pretrain", *bio, "--d-sae", "16", "--n-people", "99999", "--out", "x"], ["--n-people 99999", "at most"]),
        (["pretrain", "--hook", HOOK, "--texts", "t", "--d-sae", "16", "--out", "x"], ["--model", "--world bio"]),
        (["align", "--ontology", str(root / "concepts.jsonl"), "--sae", stage1_sae, "--out", "x"], ["--world bio"]),
        (["eval", "--sae", aligned_sae, "--out", "x"], ["--model", "--world bio"]),
        ([*pre, "--d-sae", "16", *bio], ["--world bio", "drop --model"]),
        ([*pre, "--d-sae", "16", "--n-people", "5"], ["--n-people", "--world bio"]),
        (["pretrain", "--world", "shakespeare", "--d-sae", "16", "--out", "x"], ["--world", "'bio'"]),
        ([*pre[:1], "--model", str(root), *pre[3:], "--d-sae", "16"], ["tl_config.json", "save_transformer"]),
        (["align", *user, "--sae", stage1_sae, "--out", "x", "--epochs", "-3"], ["--epochs", "positive"]),
        (["align", "--model", str(root / "model"), "--sae", stage1_sae, "--out", "x"], ["--ontology"]),
        (["align", *user, "--sae", str(root / "nope"), "--out", "x"], ["--sae", "no such folder"]),
        (["align", *bio, "--sae", stage1_sae, "--out", "x", "--ontology", "missing.jsonl"], ["--ontology", "no such"]),
        (["eval", *user, "--sae", stage1_sae, "--stage1", aligned_sae, "--out", "x"], ["swap --sae and --stage1"]),
        (["demo", "--out", str(root / "concepts.jsonl")], ["--out", "is a file"]),
        (["demo", "--n-people", "0"], ["--n-people", "positive"]),
        (["demo", "--device", "tpu"], ["--device", "cpu"]),
        (["train-base", "--out", "x", "--steps", "0"], ["--steps", "positive"]),
        (["train-base", "--out", "x", "--n-people", "-1"], ["--n-people", "positive"]),
        (["publish", str(root / "nope"), "a/b", "--sae-id", "s", "--dry-run"], ["SAE_DIR", "no such folder"]),
        (["publish", aligned_sae, "a/b", "--sae-id", "s", "--texts", "t", "--dry-run"], ["--model", "both or neither"]),
        (["train-two-hop", "--out", "x", "--steps", "0"], ["--steps", "positive"]),
        (["train-two-hop", "--out", "x", "--lr", "0"], ["--lr", "> 0"]),
        (["train-two-hop", "--out", "x", "--checkpoint-every", "-1"], ["--checkpoint-every", "≥ 0"]),
        (["train-two-hop", "--out", "x", "--format", "both"], ["--format", "explicit"]),
        (["two-hop-study", "--out", "x", "--swap-items", "0"], ["--swap-items", "positive"]),
        (["grokking", "--out", "x", "--checkpoint-every", "0"], ["--checkpoint-every", "positive"]),
        (["grokking", "--out", "x", "--lr", "inf"], ["--lr", "finite"]),
        (["grokking", "--out", "x", "--threads", "two"], ["--threads", "integer"]),
        (["pretrain", "--out", "x"], ["--d-sae"]),
    ]


@pytest.fixture(scope="module")
def usage_root(user_files, tiny_model):
    """user_files plus an (untrained) plain Stage-1 SAE and an aligned SAE made from it."""
    from sae_lens import StandardSAE, StandardSAEConfig

    from align_lens.saes.aligned import aligned_from_sae

    stage1 = StandardSAE(StandardSAEConfig(d_in=tiny_model.cfg.d_model, d_sae=16))
    stage1.cfg.metadata.hook_name = HOOK
    stage1.save_model(user_files / "usage_stage1")
    aligned_from_sae(stage1, CONCEPTS).save_model(user_files / "usage_aligned")
    return user_files


def test_usage_errors_are_one_line_with_exit_status_2(usage_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for argv, words in _usage_cases(usage_root):
        try:
            code = main(argv)
        except SystemExit as exit_:
            code = exit_.code
        err = capsys.readouterr().err
        assert code == 2, (argv, err)
        assert _error_lines(err) == 1 and "Traceback" not in err, (argv, err)
        assert all(w in err for w in words), (argv, err)
    assert not (tmp_path / "x").exists()


def test_debug_shows_the_traceback(usage_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="--k 9"):
        main(
            ["pretrain", "--model", str(usage_root / "model"), "--hook", HOOK, "--texts", "t", "--d-sae", "8"]
            + ["--k", "9", "--out", "x", "--debug"]
        )


def test_defaults_come_from_the_config_dataclasses():
    parser = build_parser()
    align = parser.parse_args(["align", "--sae", "s", "--out", "o"])
    assert align.epochs == AlignConfig().epochs and align.batch_size == AlignConfig().batch_size
    assert align.binding == AlignConfig().binding and align.device == "cpu"
    assert align.lr == AlignConfig().optimiser.lr == default_of(AlignConfig, "optimiser.lr")  # a nested block's field
    assert align.silence_weight == AlignConfig().weights.silence and align.seed == AlignConfig().runtime.seed
    pretrain = parser.parse_args(["pretrain", "--d-sae", "8", "--out", "o"])
    assert pretrain.k == default_of(Stage1Config, "k") == 16 and pretrain.seed == Runtime().seed
    demo = parser.parse_args(["demo"])
    assert demo.epochs == DemoConfig().align.epochs == default_of(DemoConfig, "align.epochs")
    assert demo.hook == DemoConfig().hook_name and demo.out_dir == DemoConfig().out_dir
    assert demo.stage1_steps == DemoConfig().stage1.steps and demo.d_sae == DemoConfig().stage1.d_sae
    ev = parser.parse_args(["eval", "--sae", "s", "--out", "o"])
    assert (ev.validation_entities, ev.test_entities, tuple(ev.modes)) == (0, None, ())
    assert tuple(ev.alphas) == EvalConfig().alphas
    ev = parser.parse_args(
        ["eval", "--sae", "s", "--out", "o", "--validation-entities", "5", "--modes", "delta", "paper"]
    )
    assert ev.validation_entities == 5 and ev.modes == ["delta", "paper"]


def _commands() -> list[str]:
    parser = build_parser()
    return list(next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices)


@pytest.mark.parametrize("command", _commands())
def test_every_subcommand_has_help_with_device(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and "usage" in out.lower() and "--device" in out and "--debug" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", _commands())
def test_every_subcommand_refuses_a_missing_device_in_one_line(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    required = {"publish": ["sae", "a/b", "--sae-id", "s"], "eval": ["--sae", "s"], "align": ["--sae", "s"]}
    argv = [command, *required.get(command, []), "--out", "o", "--d-sae", "8", "--device", "cuda"]
    with pytest.raises(SystemExit) as exit_:
        main([a for a in argv if command == "pretrain" or a not in ("--d-sae", "8")])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and _error_lines(err) == 1 and "CUDA is not available" in err, err
    assert not list(tmp_path.iterdir())  # nothing written, not even --out


def test_align_refuses_a_non_empty_out_and_keeps_it(usage_root, tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep").write_text("precious")
    argv = ["align", "--model", str(usage_root / "model"), "--ontology", str(usage_root / "concepts.jsonl")]
    assert main([*argv, "--sae", str(usage_root / "usage_stage1"), "--out", str(tmp_path / "x")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "x" / "keep").read_text() == "precious"


def test_align_passes_the_interchange_options_to_stage_2(usage_root, tmp_path, monkeypatch):
    import align_lens.training.stage2 as stage2

    seen = []

    def stop(sae, ontology, model=None, unlabelled=None, config=None):
        seen.append(config)
        raise KeyboardInterrupt  # the command stops ("interrupted") before anything is written

    monkeypatch.setattr(stage2, "align", stop)
    argv = ["align", "--model", str(usage_root / "model"), "--ontology", str(usage_root / "concepts.jsonl")]
    argv += ["--sae", str(usage_root / "usage_stage1"), "--out", str(tmp_path / "x")]
    for extra in ([], ["--interchange-weight", "3", "--interchange-span"]):
        assert main([*argv, *extra]) != 0 and not (tmp_path / "x").exists()
    assert (seen[0].weights.interchange, seen[0].interchange_span) == (AlignConfig().weights.interchange, False)
    assert (seen[1].weights.interchange, seen[1].interchange_span) == (3.0, True)


TWO_HOP_WORK = {  # command → (module, function) it would run, and options it would accept
    "train-two-hop": ("align_lens.worlds.two_hop_model", "train_two_hop_model", ["--steps", "1"]),
    "two-hop-study": ("align_lens.worlds.two_hop_study", "run_two_hop_study", ["--swap-items", "1"]),
    "grokking": ("align_lens.worlds.grokking", "run_grokking", ["--steps", "1"]),
}


@pytest.mark.parametrize("command", list(TWO_HOP_WORK))
def test_two_hop_commands_refuse_an_unknown_device_before_any_work(command, tmp_path, capsys, monkeypatch):
    module, work, options = TWO_HOP_WORK[command]
    real = getattr(importlib.import_module(module), work)

    @functools.wraps(real)  # keeps the signature the parser reads its defaults from
    def no_work(*args, **kwargs):
        raise AssertionError(f"{command} started work despite --device nonsense")

    monkeypatch.setattr(f"{module}.{work}", no_work)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        main([command, "--out", "o", *options, "--device", "nonsense"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and _error_lines(err) == 1 and "Traceback" not in err, err
    assert f"align-lens {command}: error: argument --device" in err and "'nonsense'" in err, err
    assert "cpu, cuda, cuda:N or mps" in err
    assert not list(tmp_path.iterdir())  # nothing written, not even --out


def test_two_hop_commands_take_debug_and_read_their_defaults_from_the_library():
    from align_lens.worlds.grokking import GrokkingConfig
    from align_lens.worlds.two_hop import TwoHopWorld
    from align_lens.worlds.two_hop_model import train_two_hop_model
    from align_lens.worlds.two_hop_study import StudyConfig

    parser = build_parser()
    g = parser.parse_args(["grokking", "--debug"])
    assert g.debug and g.device == "cpu" and g.out == GrokkingConfig().out_dir and g.model is None
    c = GrokkingConfig()
    for flag, field in (("steps", "steps"), ("lr", "lr"), ("checkpoint_every", "checkpoint_every")):
        assert getattr(g, flag) == getattr(c, field), flag
    for flag in ("weight_decay", "init_scale", "n_entities", "n_relations", "world_heldout"):
        assert getattr(g, flag) == getattr(c, flag), flag
    assert g.world_train is None and not g.official  # None: the config's 2,000, or all 4,000 with --official
    assert g.eval_every == c.eval_every
    assert g.hook == c.hook_name and g.seeds is None and not g.quick  # None: the config's seeds (3 of them)
    assert len(c.seeds) >= 3
    assert g.threads == GrokkingConfig().threads == 1
    s = parser.parse_args(["two-hop-study", "--debug", "--device", "cpu"])
    assert s.debug and (s.hook, s.entity_hook, s.swap_items) == (
        StudyConfig().hook_name,
        StudyConfig().entity_hook_name,
        StudyConfig().swap_items,
    )
    assert s.out == "runs/two_hop_study" and s.model is None
    t = parser.parse_args(["train-two-hop", "--out", "m", "--debug"])
    assert t.debug and t.format == "explicit" and not t.official and t.world_seed == 0
    assert (t.phrasing, t.n_entities) == (TwoHopWorld().phrasing, TwoHopWorld().n_entities) == ("natural", 100)
    for name in ("steps", "lr", "checkpoint_every", "eval_every", "threads", "seed", "resume"):
        assert getattr(t, name) == default_of(train_two_hop_model, name), name
    assert parser.parse_args(["train-two-hop", "--out", "m", "--no-resume"]).resume is False


@pytest.mark.parametrize(
    ("options", "expected"),
    [([], (False, 2000)), (["--official"], (True, None)), (["--official", "--world-train", "1000"], (True, 1000))],
)
def test_grokking_official_takes_the_layered_world_and_all_its_compositions(tmp_path, monkeypatch, options, expected):
    import align_lens.worlds.grokking as grokking

    seen = []
    monkeypatch.setattr(grokking, "run_grokking", lambda cfg: seen.append(cfg) or {"seeds": {}, "wall_s": 0.0})
    assert main(["grokking", "--out", str(tmp_path / "g"), *options]) == 0
    assert (seen[0].official, seen[0].world_train) == expected


def test_grokking_quick_fills_in_only_the_options_not_given(tmp_path, monkeypatch):
    import align_lens.worlds.grokking as grokking

    seen = []
    monkeypatch.setattr(grokking, "run_grokking", lambda cfg: seen.append(cfg) or {"seeds": {}, "wall_s": 0.0})
    assert main(["grokking", "--out", str(tmp_path / "g"), "--quick"]) == 0
    assert all(getattr(seen[0], k) == v for k, v in grokking.QUICK.items())
    given = {"seeds": (3,), "steps": 123, "checkpoint_every": 41, "init_scale": 2.5, "weight_decay": 0.3}
    assert set(grokking.QUICK) <= set(given)  # every preset value can be overridden from the command line
    flags = [x for k in grokking.QUICK for x in (f"--{k.replace('_', '-')}", str(given[k]).strip("(,)"))]
    assert main(["grokking", "--out", str(tmp_path / "g"), "--quick", *flags]) == 0
    assert {k: getattr(seen[1], k) for k in grokking.QUICK} == {k: given[k] for k in grokking.QUICK}


def test_hub_is_a_library_without_its_own_command_line():
    import align_lens.hub as hub

    assert not hasattr(hub, "publish_main") and not hasattr(hub, "_publish_parser")


def test_overwrite_replaces_only_a_folder_align_lens_wrote(tmp_path, capsys):
    from align_lens.files import OUTPUT_MARKER, output_folder

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("precious")
    assert main(["demo", "--overwrite", "--out", str(mine)]) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == 1 and OUTPUT_MARKER in err and "not written by align_lens" in err
    assert (mine / "thesis.tex").read_text() == "precious"

    out = tmp_path / "demo"
    with output_folder(out, overwrite=False):  # an earlier (empty) run
        pass
    assert (out / OUTPUT_MARKER).is_file()
    with output_folder(out, overwrite=True) as stage:
        (stage / "results.json").write_text("{}")
    assert sorted(p.name for p in out.iterdir()) == [OUTPUT_MARKER, "results.json"]


def test_publish_dry_run_lists_sparsity_and_the_ontology_only_when_given(usage_root, capsys):
    from safetensors.torch import save_file

    sae = usage_root / "usage_aligned"
    save_file({"sparsity": torch.zeros(16 + len(CONCEPTS))}, sae / "sparsity.safetensors")
    argv = ["publish", str(sae), "you/x", "--sae-id", "layer_0", "--dry-run", "--no-plain"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "you/x/layer_0/sparsity.safetensors" in out and "ontology.json" not in out and "-plain" not in out
    assert main([*argv, "--ontology", str(usage_root / "concepts.jsonl")]) == 0
    assert "you/x/layer_0/ontology.json" in capsys.readouterr().out
    assert main(["publish", str(sae), "you/x", "--sae-id", "", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert _error_lines(err) == 1 and "sae_id" in err
    json.loads((sae / "cfg.json").read_text())  # the input folder is untouched and valid


def test_world_pretrain_with_checkpoints_then_align(tmp_path, capsys):
    """--world bio: the shipped model, its world's corpus and ontology, the demo's hook."""
    s1, out = tmp_path / "s1", tmp_path / "aligned"
    ckpt = ["--checkpoint-dir", str(tmp_path / "ckpt"), "--checkpoints", "1"]
    bio = ["--world", "bio", "--n-people", "30"]
    assert main(["pretrain", *bio, "--out", str(s1), "--d-sae", "128", "--k", "8", "--steps", "40", *ckpt]) == 0
    assert list((tmp_path / "ckpt").glob("*/trainer_state.pt"))
    assert main(["align", *bio, "--sae", str(s1), "--out", str(out), "--epochs", "2"]) == 0
    aligned = SAE.load_from_disk(out)
    assert isinstance(aligned, AlignedSAE) and aligned.cfg.metadata.hook_name == DemoConfig().hook_name
    assert sorted(p.name for p in out.iterdir()) == [".align_lens_output", "cfg.json", "sae_weights.safetensors"]
    assert "binding accuracy" in capsys.readouterr().out


@pytest.mark.slow
def test_reduced_demo_from_the_command_line_on_cpu_then_overwrite(tmp_path, capsys):
    from align_lens.files import OUTPUT_MARKER

    out = tmp_path / "demo"
    small = ["--n-people", "40", "--d-sae", "256", "--k", "8", "--stage1-steps", "60", "--epochs", "2"]
    argv = ["demo", "--device", "cpu", "--out", str(out), *small, "--batch-size", "128", "--swap-items", "4"]
    assert main(argv) == 0
    assert "binding accuracy" in capsys.readouterr().out and (out / OUTPUT_MARKER).is_file()
    first = (out / "results.json").read_text()
    assert main(argv) == 2 and "--overwrite" in capsys.readouterr().err  # refuses without --overwrite
    assert main([*argv, "--overwrite", "--seed", "1"]) == 0
    assert (out / "results.json").read_text() != first and (out / "aligned_sae" / "cfg.json").is_file()
