"""Bad inputs, faults and misuse: each case must raise the named exception with a message that names the problem.

Classes: security (planted checkpoints, path ids), resume fingerprints, training that would not train, concept
names, context length and hooks, ontology files, saved files, numerics. A hypothesis test feeds arbitrary bytes
and JSON values to the ontology loaders.
"""

from __future__ import annotations

import copy
import json
import pickle
import struct
from argparse import ArgumentTypeError
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sae_lens import SAE, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig

from align_lens import AlignConfig, Ontology, Runtime, Stage1Config, align, pretrain_sae
from align_lens.activations.store import ActivationStore, file_sha256, write_store, write_tensor_store
from align_lens.adapter import load_transformer, save_transformer
from align_lens.cli import options
from align_lens.files import output_folder
from align_lens.hub import load_aligned, push_to_hub
from align_lens.interventions.swaps import swap_hooks
from align_lens.ontology import OntologyError
from align_lens.saes.aligned import aligned_from_sae
from align_lens.saes.plain import aligned_from_plain, plain_sae
from align_lens.training import checkpoint, validation
from align_lens.training.config import with_values

HOOK = "blocks.1.hook_resid_post"
NAMES = ["a", "b", "c"]
FAST = AlignConfig(epochs=2, batch_size=32, patience=None, runtime=Runtime(progress=False))


def _blobs(n=20, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(3).repeat_interleave(n)
    return torch.randn(3, d, generator=g)[y] * 3 + torch.randn(len(y), d, generator=g), y


def _onto(n=20, names=NAMES):
    return Ontology.from_records([dict(prompt=f"p{i}", concept=names[i // n]) for i in range(3 * n)], list(names))


def _sae(arch="standard", seed=0):
    torch.manual_seed(seed)
    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=32)) if arch == "standard" else None
    sae = sae or TopKSAE(TopKSAEConfig(d_in=16, d_sae=32, k=4))
    sae.cfg.metadata.hook_name = HOOK
    return sae


def _align(tmp, config=None, sae=None, ontology=None, **kw):
    x, y = _blobs()
    args = dict(activations=x, labels=y) | kw
    return align(sae or _sae(), ontology or _onto(), **args, config=config)


def _cfg(dotted: dict | None = None, **kw):
    """FAST with the fields in `kw` and the dotted (nested) fields in `dotted` changed."""
    return with_values(FAST, (dotted or {}) | kw)


def _pretrain(tmp, x=None, **kw):
    x = torch.randn(256, 16, generator=torch.Generator().manual_seed(0)) if x is None else x
    return pretrain_sae(x, with_values(Stage1Config(d_sae=32, k=4, steps=4, batch_size=64), kw))


def _aligned():
    sae = aligned_from_sae(_sae(), NAMES)
    sae.cfg.metadata.hook_name = HOOK
    return sae


# ---- helpers that build a bad situation --------------------------------------------------
class Payload:
    """Unpickling this would create a file: proof that code ran."""

    def __init__(self, flag: Path):
        self.flag = flag

    def __reduce__(self):
        return (Path.touch, (self.flag,))


def _planted_align_checkpoint(tmp):
    ck = tmp / "ck"
    ck.mkdir()
    with open(ck / "align_checkpoint.pt", "wb") as f:
        pickle.dump({"sae": Payload(tmp / "pwned")}, f)
    try:
        _align(tmp, _cfg(checkpoint_dir=str(ck)))
    finally:
        assert not (tmp / "pwned").exists(), "the planted checkpoint ran code"


def _planted_checkpoint_file(tmp):
    torch.save({"x": Payload(tmp / "pwned")}, tmp / "step_000001.pt")
    try:
        checkpoint.load(tmp / "step_000001.pt")
    finally:
        assert not (tmp / "pwned").exists(), "the planted checkpoint ran code"


def _align_then(tmp, **change):
    cfg = _cfg(checkpoint_dir=str(tmp / "ck"))
    _align(tmp, cfg)
    kw = {k: v for k, v in change.items() if k in ("sae", "ontology")}
    _align(tmp, _cfg(change.get("config"), checkpoint_dir=str(tmp / "ck")), **kw)


def _pretrain_then(tmp, **change):
    base = dict(checkpoint_dir=str(tmp / "ck"), n_checkpoints=1)
    _pretrain(tmp, **base)
    _pretrain(tmp, **(base | change))


def _foreign_checkpoints(tmp):
    (tmp / "ck" / "123").mkdir(parents=True)
    (tmp / "ck" / "123" / "trainer_state.pt").write_bytes(b"")
    _pretrain(tmp, checkpoint_dir=str(tmp / "ck"), n_checkpoints=1)


def _write(tmp, name: str, content: str | bytes) -> Path:
    path = tmp / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return path


def _jsonl(tmp, *records, name="bad.jsonl"):
    lines = [r if isinstance(r, str) else json.dumps(r) for r in records]
    return Ontology.load(_write(tmp, name, "\n".join(lines) + "\n"))


GOOD = [dict(prompt="x is", concept="a"), dict(prompt="y is", concept="b")]


def _saved_sae(tmp) -> Path:
    _aligned().save_model(tmp / "sae")
    return tmp / "sae"


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _edit_cfg(tmp, **changes):
    folder = _saved_sae(tmp)
    cfg = json.loads((folder / "cfg.json").read_text())
    (folder / "cfg.json").write_text(json.dumps(cfg | changes))
    load_aligned(folder)


def _saved_model(tmp, tiny_model) -> Path:
    return save_transformer(tiny_model, tmp / "model")


def _long_prompt(tiny_model) -> str:
    return " ".join(["alpha"] * (tiny_model.cfg.n_ctx + 5))


def _no_hub(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("the Hub was contacted")

    monkeypatch.setattr(SAE, "from_pretrained", refuse)


# ---- outputs and stores (issue 18): nothing lost, nothing mislabelled -----------------------
def _cli(*argv: str) -> None:
    """`align-lens ARGV --debug`: the command's error is raised, not printed."""
    from align_lens.cli import main

    main([*argv, "--debug"])


def _keeps(folder: Path, run: Callable[[], Any]) -> None:
    """Run `run` with a file of the user's in `folder`; the file must survive whatever `run` does."""
    folder.mkdir(exist_ok=True)
    (folder / "precious.txt").write_text("mine")
    try:
        run()
    finally:
        assert (folder / "precious.txt").read_text() == "mine", f"{folder} lost the user's file"


def _failed_overwrite(tmp):
    with output_folder(tmp / "o", overwrite=False) as stage:
        (stage / "result.txt").write_text("old")
    try:
        with output_folder(tmp / "o", overwrite=True) as stage:
            (stage / "result.txt").write_text("new")
            raise RuntimeError("the run failed")
    finally:
        assert (tmp / "o" / "result.txt").read_text() == "old"
        assert sorted(p.name for p in tmp.iterdir()) == ["o", "runs"]  # no staging folder left behind


def _store(tmp, edit: Callable[[Path, dict], None], read: bool = False):
    """A two-shard store, damaged by `edit(folder, manifest)`, then opened (and read)."""
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    write_tensor_store(tmp / "st", x, rows_per_shard=32)
    manifest = json.loads((tmp / "st" / "manifest.json").read_text())
    edit(tmp / "st", manifest)
    (tmp / "st" / "manifest.json").write_text(json.dumps(manifest))
    opened = ActivationStore(tmp / "st")
    if read:
        opened.read_all()


def _nan_bytes(folder: Path, manifest: dict, rehash: bool = False) -> None:
    """Overwrite the last 4 bytes of shard 0's activations with a float32 NaN (optionally fixing its checksum)."""
    shard = folder / "shard_00000.safetensors"
    data = bytearray(shard.read_bytes())
    data[-4:] = struct.pack("<f", float("nan"))
    shard.write_bytes(bytes(data))
    if rehash:
        manifest["shards"][0]["sha256"] = file_sha256(shard)


def _broken_manifest(tmp):
    write_tensor_store(tmp / "st", torch.randn(8, 4))
    _truncate(tmp / "st" / "manifest.json")
    ActivationStore(tmp / "st")


def _grokking_model_without_world(tmp):
    (tmp / "m1").mkdir()
    _cli("grokking", "--model", "m1", "--out", "g")


# ---- the table ----------------------------------------------------------------------------
@dataclass
class Case:
    id: str
    run: Callable[..., Any]
    error: type[BaseException]
    message: str


CASES = [
    # security: checkpoints never run code, ids never leave the staging folder, names are quoted
    Case(
        "planted-align-checkpoint", _planted_align_checkpoint, ValueError, r"cannot read checkpoint .*align_checkpoint"
    ),
    Case("planted-checkpoint-file", _planted_checkpoint_file, ValueError, r"cannot read checkpoint .*step_000001"),
    *[
        Case(
            f"sae-id-{i}",
            lambda t, s=s: push_to_hub(_aligned(), "o/n", s, dry_run=True, staging_dir=t / "s"),
            ValueError,
            r"sae_id must be a relative folder path",
        )
        for i, s in enumerate(["../x", "a/../../x", "/abs/x", "", "a//b", ".", "a\\b", "~/x"])
    ],
    Case("repo-id-dots", lambda t: push_to_hub(_aligned(), "../x", "l1", dry_run=True), ValueError, r"repo_id must be"),
    Case(
        "repo-id-three-parts", lambda t: push_to_hub(_aligned(), "a/b/c", "l1", dry_run=True), ValueError, "owner/name"
    ),
    Case(
        "plain-suffix-slash",
        lambda t: push_to_hub(_aligned(), "o/n", "l1", plain_suffix="/../x", dry_run=True),
        ValueError,
        "plain_suffix",
    ),
    Case("load-sae-id-dots", lambda t: load_aligned("owner/name", "../../x"), ValueError, r"sae_id .*'\.\./\.\./x'"),
    # resume: a checkpoint of another run is refused, naming what differs
    Case(
        "align-resume-other-sae",
        lambda t: _align_then(t, sae=_sae("topk")),
        ValueError,
        r"sae\.architecture \(checkpoint: 'standard', now: 'topk'\)",
    ),
    Case("align-resume-other-weights", lambda t: _align_then(t, sae=_sae(seed=1)), ValueError, r"sae\.weights"),
    Case(
        "align-resume-other-ontology",
        lambda t: _align_then(t, ontology=_onto(names=["a", "b", "z"])),
        ValueError,
        r"differs in ontology \(checkpoint",
    ),
    Case(
        "align-resume-other-lr",
        lambda t: _align_then(t, config={"optimiser.lr": 5e-4}),
        ValueError,
        r"settings\.optimiser\.lr",
    ),
    Case("pretrain-resume-other-k", lambda t: _pretrain_then(t, k=8), ValueError, r"\bk \(checkpoint: 4, now: 8\)"),
    Case("pretrain-resume-other-d-sae", lambda t: _pretrain_then(t, d_sae=48), ValueError, r"d_sae \(checkpoint: 32"),
    Case(
        "pretrain-resume-other-arch",
        lambda t: _pretrain_then(t, architecture="standard"),
        ValueError,
        r"architecture \(checkpoint: 'topk', now: 'standard'\)",
    ),
    Case("pretrain-resume-other-steps", lambda t: _pretrain_then(t, steps=6), ValueError, r"settings\.steps"),
    Case("pretrain-foreign-checkpoints", _foreign_checkpoints, ValueError, r"without align_lens_stage1\.json"),
    # training that would not train
    Case("align-batch-size-1", lambda t: _align(t, _cfg(batch_size=1)), ValueError, r"batch_size must be .* ≥ 2"),
    Case("align-batch-size-0", lambda t: _align(t, _cfg(batch_size=0)), ValueError, r"batch_size must be"),
    Case("align-epochs-0", lambda t: _align(t, _cfg(epochs=0)), ValueError, r"epochs must be an integer ≥ 1, got 0"),
    Case("align-epochs-negative", lambda t: _align(t, _cfg(epochs=-3)), ValueError, r"epochs must be .* got -3"),
    Case("align-epochs-float", lambda t: _align(t, _cfg(epochs=2.5)), ValueError, r"epochs must be an integer"),
    Case("align-steps-0", lambda t: _align(t, _cfg(steps=0)), ValueError, r"steps must be an integer ≥ 1"),
    Case(
        "align-lr-10",
        lambda t: _align(t, _cfg({"optimiser.lr": 10})),
        ValueError,
        r"lr must be a finite number in \(0, 1\], got 10",
    ),
    Case("align-lr-1e39", lambda t: _align(t, _cfg({"optimiser.lr": 1e39})), ValueError, r"lr must be .*1e\+39"),
    Case("align-lr-nan", lambda t: _align(t, _cfg({"optimiser.lr": float("nan")})), ValueError, r"lr must be .*nan"),
    Case(
        "align-lr-0",
        lambda t: _align(t, _cfg({"optimiser.lr": 0})),
        ValueError,
        r"lr must be a finite number in \(0, 1\]",
    ),
    Case("align-lr-negative", lambda t: _align(t, _cfg({"optimiser.lr": -1e-3})), ValueError, r"lr must be"),
    Case(
        "align-dtype-float61", lambda t: _align(t, _cfg(dtype="float61")), ValueError, r"dtype must be one of .*float61"
    ),
    Case("align-patience-0", lambda t: _align(t, _cfg(patience=0)), ValueError, r"patience must be .* or None"),
    Case("align-binding-name", lambda t: _align(t, _cfg(binding="cos")), ValueError, r"binding must be one of"),
    Case("align-init-name", lambda t: _align(t, _cfg(init="pca")), ValueError, r"init must be one of"),
    Case("align-weight-negative", lambda t: _align(t, _cfg({"weights.silence": -1})), ValueError, r"weights\.silence"),
    Case(
        "align-weight-nan",
        lambda t: _align(t, _cfg({"weights.binding": float("nan")})),
        ValueError,
        r"weights\.binding",
    ),
    Case(
        "align-weights-as-dict",
        lambda t: _align(t, _cfg(weights={"binding": 2.0})),
        TypeError,
        r"expected a LossWeights, got dict; pass e\.g\. AlignConfig\(weights=LossWeights\(binding=2\.0\)\)",
    ),
    Case(
        "align-runtime-threads-0",
        lambda t: _align(t, _cfg({"runtime.threads": 0})),
        ValueError,
        r"AlignConfig\.runtime\.threads must be an integer ≥ 1, got 0; or None",
    ),
    Case(
        "align-zero-rows",
        lambda t: _align(t, _cfg(), activations=torch.zeros(0, 16), labels=torch.zeros(0).long()),
        ValueError,
        r"activations: 0 rows; at least 2",
    ),
    Case(
        "align-one-row",
        lambda t: _align(t, _cfg(), activations=torch.ones(1, 16), labels=torch.zeros(1).long()),
        ValueError,
        r"activations: 1 rows",
    ),
    Case(
        "align-constant-acts",
        lambda t: _align(t, _cfg(), activations=torch.ones(60, 16)),
        ValueError,
        r"constant \(zero variance",
    ),
    Case(
        "align-unlabelled-0-rows",
        lambda t: _align(t, _cfg(), unlabelled=torch.zeros(0, 16)),
        ValueError,
        r"unlabelled activations: 0 rows",
    ),
    Case(
        "align-unlabelled-1-row",
        lambda t: _align(t, _cfg(), unlabelled=torch.randn(1, 16)),
        ValueError,
        r"unlabelled activations: 1 rows",
    ),
    Case(
        "align-float-labels",
        lambda t: _align(t, _cfg(), labels=torch.zeros(60)),
        ValueError,
        r"labels must be integer concept indices",
    ),
    Case(
        "align-label-out-of-range",
        lambda t: _align(t, _cfg(), labels=torch.full((60,), 5)),
        ValueError,
        r"label 5 is outside the 3 concepts",
    ),
    Case(
        "align-label-negative",
        lambda t: _align(t, _cfg(), labels=torch.full((60,), -1)),
        ValueError,
        r"label -1 is outside",
    ),
    Case(
        "align-labels-length",
        lambda t: _align(t, _cfg(), labels=torch.zeros(7).long()),
        ValueError,
        r"one label per row",
    ),
    Case("pretrain-k-0", lambda t: _pretrain(t, k=0), ValueError, r"k must be an integer ≥ 1, got 0"),
    Case("pretrain-k-above-d-sae", lambda t: _pretrain(t, k=40), ValueError, r"k=40 is larger than d_sae=32"),
    Case("pretrain-d-sae-0", lambda t: _pretrain(t, d_sae=0), ValueError, r"d_sae must be an integer ≥ 1"),
    Case("pretrain-steps-0", lambda t: _pretrain(t, steps=0), ValueError, r"steps must be an integer ≥ 1, got 0"),
    Case("pretrain-batch-0", lambda t: _pretrain(t, batch_size=0), ValueError, r"batch_size must be"),
    Case("pretrain-lr-10", lambda t: _pretrain(t, lr=10.0), ValueError, r"lr must be a finite number"),
    Case("pretrain-architecture", lambda t: _pretrain(t, architecture="gated"), ValueError, r"architecture must be"),
    Case("pretrain-constant", lambda t: _pretrain(t, x=torch.ones(256, 16)), ValueError, r"constant \(zero variance"),
    Case(
        "result-no-steps",
        lambda t: validation.check_trained(_sae(), 0, 0.1, 0.1, "X"),
        RuntimeError,
        r"X ran 0 training steps",
    ),
    Case(
        "result-diverged",
        lambda t: validation.check_trained(_sae(), 5, 0.2, 5e5, "X"),
        FloatingPointError,
        r"X diverged: .* from 0\.2 to 5e\+05",
    ),
    Case(
        "result-nan-weights",
        lambda t: validation.check_finite_weights(_nan_sae(), "X"),
        FloatingPointError,
        r"non-finite weights in \['W_enc'\]",
    ),
    # names
    Case(
        "names-differ-by-space",
        lambda t: Ontology(["EMPLOYER ", "EMPLOYER"]),
        OntologyError,
        r"duplicate concept name.*'EMPLOYER'.*whitespace",
    ),
    Case(
        "split-empty",
        lambda t: Ontology.from_records([GOOD[0] | dict(split=""), GOOD[1]]),
        OntologyError,
        r"record 0 has split ''",
    ),
    Case(
        "split-unknown",
        lambda t: Ontology.from_records([GOOD[0] | dict(split="test"), GOOD[1]]),
        OntologyError,
        r"split 'test'",
    ),
    Case("concept-name-empty", lambda t: Ontology(["a", "  "]), OntologyError, r"concept 1 needs a non-empty text"),
    Case("concept-name-number", lambda t: Ontology(["a", 5]), OntologyError, r"concept 1 needs a non-empty text .*5"),
    Case(
        "labels-other-concepts",
        lambda t: _onto().labels(order=["a", "b", "x"]),
        OntologyError,
        r"only in the ontology: \['c'\]; only in the SAE: \['x'\]",
    ),
    Case("swap-unknown-concept", lambda t: swap_hooks(_aligned(), "a", "zz", 1.0), KeyError, r"unknown concept 'zz'"),
    # context length and hooks
    Case(
        "hook-change",
        lambda t: _align(t, _cfg(hook_name="blocks.0.hook_resid_post")),
        ValueError,
        r"trained at 'blocks\.1\.hook_resid_post' .*allow_hook_change=True",
    ),
    # ontology files
    Case(
        "jsonl-broken-line-4",
        lambda t: _jsonl(t, *GOOD, "", '{"prompt": "x",'),
        OntologyError,
        r"bad\.jsonl, line 4: not valid JSON",
    ),
    Case(
        "jsonl-prompt-number",
        lambda t: _jsonl(t, *GOOD, dict(prompt=42, concept="a")),
        OntologyError,
        r"bad\.jsonl, line 3: prompt must be text, got int 42",
    ),
    Case(
        "jsonl-concept-list",
        lambda t: _jsonl(t, *GOOD, dict(prompt="z", concept=["a"])),
        OntologyError,
        r"line 3: concept must be text, got list",
    ),
    Case(
        "jsonl-answer-number",
        lambda t: _jsonl(t, *GOOD, dict(prompt="z", concept="a", answer=1914)),
        OntologyError,
        r"line 3: answer must be text, got int 1914",
    ),
    Case(
        "jsonl-empty-prompt",
        lambda t: _jsonl(t, dict(prompt="", concept="a"), GOOD[1]),
        OntologyError,
        r"line 1 has an empty prompt",
    ),
    Case(
        "jsonl-null-prompt",
        lambda t: _jsonl(t, GOOD[0], dict(prompt=None, concept="b")),
        OntologyError,
        r"line 2 has an empty prompt",
    ),
    Case(
        "jsonl-null-concept",
        lambda t: _jsonl(t, GOOD[0], dict(prompt="q", concept=None)),
        OntologyError,
        r"line 2 has an empty concept",
    ),
    Case(
        "jsonl-list-record",
        lambda t: _jsonl(t, GOOD[0], "[1, 2]"),
        OntologyError,
        r"line 2 must be an object with 'prompt' and 'concept'",
    ),
    Case(
        "jsonl-unknown-field",
        lambda t: _jsonl(t, GOOD[0] | dict(label="a"), GOOD[1]),
        OntologyError,
        r"line 1 has unknown field\(s\) \['label'\]",
    ),
    Case("jsonl-empty-file", lambda t: _jsonl(t, ""), OntologyError, r"bad\.jsonl holds no records"),
    Case(
        "jsonl-latin1",
        lambda t: Ontology.load(_write(t, "l.jsonl", b'{"prompt": "caf\xe9", "concept": "a"}\n')),
        OntologyError,
        r"l\.jsonl, line 1: byte 0xe9 is not UTF-8",
    ),
    Case(
        "csv-short-row",
        lambda t: Ontology.load(_write(t, "s.csv", "prompt,concept\nx,a\ny\n")),
        OntologyError,
        r"s\.csv, line 3: 1 values, fewer than the header's 2 columns",
    ),
    Case(
        "csv-extra-column",
        lambda t: Ontology.load(_write(t, "e.csv", "prompt,concept\nx,a\ny,b,c\n")),
        OntologyError,
        r"e\.csv, line 3: 3 values, more than",
    ),
    Case(
        "csv-no-concept-column",
        lambda t: Ontology.load(_write(t, "h.csv", "prompt,label\nx,a\n")),
        OntologyError,
        r"h\.csv, line 1: the header .* needs 'prompt' and 'concept'",
    ),
    Case(
        "csv-empty-split",
        lambda t: Ontology.load(_write(t, "p.csv", "prompt,concept,split\nx,a,\ny,b,train\n")),
        OntologyError,
        r"p\.csv, line 2 has split ''",
    ),
    Case(
        "json-without-concepts",
        lambda t: Ontology.load(_write(t, "o.json", json.dumps({"examples": GOOD}))),
        OntologyError,
        r"o\.json must be an object with a 'concepts' list",
    ),
    Case(
        "json-a-list",
        lambda t: Ontology.load(_write(t, "l.json", json.dumps(GOOD))),
        OntologyError,
        r"l\.json must be an object with a 'concepts' list",
    ),
    Case(
        "json-truncated",
        lambda t: Ontology.load(_write(t, "t.json", '{"concepts": ["a", "b"], "exa')),
        OntologyError,
        r"t\.json is not valid JSON \(line 1",
    ),
    Case(
        "json-bad-example",
        lambda t: Ontology.load(
            _write(
                t, "b.json", json.dumps({"concepts": ["a", "b"], "examples": [GOOD[0], dict(prompt=3, concept="b")]})
            )
        ),
        OntologyError,
        r"b\.json, example 1: prompt must be text",
    ),
    Case(
        "ontology-unknown-suffix",
        lambda t: Ontology.load(_write(t, "o.txt", "x")),
        OntologyError,
        r"unknown ontology file type '\.txt'",
    ),
    Case(
        "ontology-missing-file",
        lambda t: Ontology.load(t / "nope.jsonl"),
        OntologyError,
        r"cannot read ontology file .*nope\.jsonl",
    ),
    # saved files
    Case(
        "sae-truncated-cfg",
        lambda t: (_truncate(_saved_sae(t) / "cfg.json"), load_aligned(t / "sae")),
        ValueError,
        r"SAE config .*cfg\.json is not valid JSON",
    ),
    Case(
        "sae-truncated-weights",
        lambda t: (_truncate(_saved_sae(t) / "sae_weights.safetensors"), load_aligned(t / "sae")),
        ValueError,
        r"sae_weights\.safetensors is not a complete safetensors file",
    ),
    Case(
        "sae-missing-weights",
        lambda t: ((_saved_sae(t) / "sae_weights.safetensors").unlink(), load_aligned(t / "sae")),
        FileNotFoundError,
        r"SAE weights .*sae_weights\.safetensors does not exist",
    ),
    Case(
        "load-missing-relative",
        lambda t: load_aligned("./runs/nothing"),
        FileNotFoundError,
        r"runs/nothing does not exist \(looked for it locally",
    ),
    Case(
        "load-missing-deep",
        lambda t: load_aligned("runs/x/y", "aligned_sae"),
        FileNotFoundError,
        r"runs/x/y/aligned_sae does not exist",
    ),
    Case(
        "load-missing-path-object",
        lambda t: load_aligned(Path("runs/x"), "aligned_sae"),
        FileNotFoundError,
        r"runs/x/aligned_sae does not exist",
    ),
    Case(
        "cfg-scales-disagree",
        lambda t: _edit_cfg(t, concept_scales=[1.0, 2.0]),
        ValueError,
        r"3 concept_names but 2 concept_scales",
    ),
    Case(
        "cfg-concepts-disagree-with-weights",
        lambda t: _edit_cfg(t, **WIDER),
        ValueError,
        r"weights have W_enc of shape \(16, 35\) but the config needs \(16, 36\)",
    ),
    Case(
        "save-into-foreign-folder",
        lambda t: ((t / "mine").mkdir(), (t / "mine" / "notes.txt").write_text("x"), _aligned().save_model(t / "mine")),
        FileExistsError,
        r"holds \['notes\.txt'\], which a save would delete",
    ),
    Case(
        "save-onto-a-file",
        lambda t: (_write(t, "f", "x"), _aligned().save_model(t / "f")),
        NotADirectoryError,
        r"is a file",
    ),
    Case(
        "plain-gain-not-power-of-two",
        lambda t: plain_sae(aligned_from_sae(_sae("topk"), NAMES), 3.0),
        ValueError,
        r"slot_gain must be a positive power of two",
    ),
    Case("plain-without-table", lambda t: aligned_from_plain(_sae()), ValueError, r"no cfg\.metadata\.align_lens"),
    # numerics
    Case(
        "swap-alpha-nan",
        lambda t: swap_hooks(_aligned(), "a", "b", float("nan")),
        ValueError,
        r"alpha must be a finite number .* nan",
    ),
    Case("swap-alpha-inf", lambda t: swap_hooks(_aligned(), "a", "b", float("inf")), ValueError, r"alpha .* inf"),
    Case("swap-alpha-text", lambda t: swap_hooks(_aligned(), "a", "b", "1"), ValueError, r"alpha .* '1'"),
    # outputs never eat inputs (issue 18)
    Case(
        "pretrain-out-cwd-overwrite",
        lambda t: _keeps(t, lambda: _cli("pretrain", "--out", ".", "--overwrite", "--d-sae", "8", "--k", "4")),
        ValueError,
        r"--out \. is the working folder",
    ),
    Case(
        "align-out-cwd-overwrite",
        lambda t: _keeps(t, lambda: _cli("align", "--sae", "s1", "--out", ".", "--overwrite")),
        ValueError,
        r"--out \. is the working folder",
    ),
    Case(
        "pretrain-out-parent",
        lambda t: _cli("pretrain", "--out", "..", "--overwrite", "--d-sae", "8", "--k", "4"),
        ValueError,
        r"--out \.\. is the working folder or one of its parents",
    ),
    Case(
        "eval-out-is-its-sae",
        lambda t: _keeps(t / "al", lambda: _cli("eval", "--sae", "al", "--out", "al", "--overwrite", "--no-swaps")),
        ValueError,
        r"--out al holds the input al\b",
    ),
    Case(
        "align-out-holds-the-ontology",
        lambda t: _keeps(
            t / "runs",
            lambda: _cli("align", "--sae", "s1", "--ontology", "runs/o.jsonl", "--out", "runs", "--overwrite"),
        ),
        ValueError,
        r"--out runs holds the input runs/o\.jsonl",
    ),
    Case(
        "overwrite-a-folder-align-lens-did-not-write",
        lambda t: _keeps(t / "mine", lambda: _cli("align", "--sae", "s1", "--out", "mine", "--overwrite")),
        FileExistsError,
        r"--out mine was not written by align_lens \(no \.align_lens_output file\)",
    ),
    Case("failed-overwrite-keeps-the-old-folder", _failed_overwrite, RuntimeError, r"the run failed"),
    # stores bound to what made them
    Case(
        "store-rows-edited",
        lambda t: _store(t, lambda f, m: m["shards"][0].update(rows=100)),
        ValueError,
        r"shard .*shard_00000\.safetensors holds activations of shape \[32, 4\] but manifest\.json records \[100, 4\]",
    ),
    Case(
        "store-shard-truncated",
        lambda t: _store(t, lambda f, m: _truncate(f / "shard_00001.safetensors")),
        ValueError,
        r"shard .*shard_00001\.safetensors does not match the checksum",
    ),
    Case(
        "store-manifest-not-json",
        _broken_manifest,
        ValueError,
        r"activation store manifest .*manifest\.json is not valid JSON",
    ),
    Case(
        "store-shard-nan-bytes",
        lambda t: _store(t, _nan_bytes),
        ValueError,
        r"shard .*shard_00000\.safetensors does not match the checksum",
    ),
    Case(
        "store-shard-nan-bytes-rehashed",
        lambda t: _store(t, lambda f, m: _nan_bytes(f, m, rehash=True), read=True),
        ValueError,
        r"shard .*shard_00000\.safetensors holds NaN or inf",
    ),
    # ontologies without contradictions
    Case(
        "prompt-with-two-concepts",
        lambda t: _jsonl(t, *GOOD, dict(prompt="x is", concept="b")),
        OntologyError,
        r"bad\.jsonl, line 1 and .*bad\.jsonl, line 3 give the same prompt 'x is' two concepts \('a' and 'b'\)",
    ),
    Case(
        "prompt-in-both-splits",
        lambda t: _jsonl(t, *GOOD, dict(prompt="x is", concept="a", split="heldout")),
        OntologyError,
        r"line 1 and .*line 3 put the same prompt 'x is' in both splits",
    ),
    Case(
        "names-equal-after-nfc",
        lambda t: Ontology(["CAF\u00c9", "CAFE\u0301"]),
        OntologyError,
        r"duplicate concept name\(s\) \['CAF\u00c9'\] .*NFC",
    ),
    Case(
        "ontology-utf16",
        lambda t: Ontology.load(_write(t, "u.jsonl", json.dumps(GOOD[0]).encode("utf-16"))),
        OntologyError,
        r"u\.jsonl is UTF-16",
    ),
    # loaded SAEs checked
    Case(
        "cfg-names-swapped",
        lambda t: _edit_cfg(t, concept_names=["b", "a", "c"]),
        ValueError,
        r"cfg\.json's concept_names \['b', 'a', 'c'\] is not what was saved",
    ),
    Case(
        "cfg-negative-scale",
        lambda t: _edit_cfg(t, concept_scales=[1.0, -1.0, 1.0]),
        ValueError,
        r"concept_scales must be finite numbers ≥ 0 .*got \[-1\.0\]",
    ),
    Case(
        "cfg-name-removed",
        lambda t: _edit_cfg(t, concept_names=["a", "b"]),
        ValueError,
        r"2 concept_names but 3 concept_slots",
    ),
    # messages
    Case(
        "grokking-model-without-world",
        _grokking_model_without_world,
        FileNotFoundError,
        r"model folder m1 has no world\.json",
    ),
    Case(
        "load-aligned-a-file",
        lambda t: (_write(t, "onto.jsonl", "{}"), load_aligned("onto.jsonl")),
        NotADirectoryError,
        r"onto\.jsonl is a file, not an SAE folder",
    ),
    Case(
        "planted-checkpoint-without-unsafe-advice",
        _planted_checkpoint_file,
        ValueError,
        r"^(?!.*weights_only).*never loads \(unpickling them could run code\)",
    ),
    Case("device-cpu-with-index", lambda t: options.device("cpu:1"), ArgumentTypeError, r"no device index"),
]


WIDER = dict(concept_names=["a", "b", "c", "d"], d_sae=36, concept_slots=[32, 33, 34, 35], concept_scales=[1.0] * 4)


def _nan_sae():
    sae = _sae()
    with torch.no_grad():
        sae.W_enc[0, 0] = float("nan")
    return sae


def test_the_table_covers_enough_cases():
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()  # "runs/..." then looks local, as a user's run folder would
    _no_hub(monkeypatch)
    with pytest.raises(case.error, match=case.message):
        case.run(tmp_path)


# ---- model-dependent cases ------------------------------------------------------------------
def test_prompt_longer_than_context_names_the_prompt(tiny_model):
    from align_lens import gather_activations
    from align_lens.evals.decoding import greedy_decode

    prompts = ["Q: alpha A:", _long_prompt(tiny_model)]
    with pytest.raises(ValueError, match=r"prompt 1 has \d+ tokens, more than the model's context of 32"):
        gather_activations(tiny_model, prompts, HOOK)
    exact = " ".join(["alpha"] * (tiny_model.cfg.n_ctx - 1))  # + BOS = n_ctx tokens: no room to generate
    with pytest.raises(ValueError, match=r"prompt 0 has 32 tokens plus 1 to generate"):
        greedy_decode(tiny_model, [exact], max_new_tokens=3)


def test_truncated_model_files_are_named(tiny_model, tmp_path):
    folder = _saved_model(tmp_path, tiny_model)
    _truncate(folder / "model.safetensors")
    with pytest.raises(ValueError, match=r"model weights .*model\.safetensors is not a complete"):
        load_transformer(folder)
    _truncate(folder / "tl_config.json")
    with pytest.raises(ValueError, match=r"model config .*tl_config\.json is not valid JSON"):
        load_transformer(folder)


def test_a_store_of_another_model_is_refused_naming_the_field(tiny_model, tmp_path):
    texts = ["Q: alpha A:", "Q: ann is the beta A:"]
    write_store(tmp_path / "st", tiny_model, texts, HOOK, position=None)
    other = copy.deepcopy(tiny_model)  # the same name and config, other weights (two local models: "custom")
    with torch.no_grad():
        other.W_E[0, 0] += 1
    with pytest.raises(ValueError, match=r"differs in \['model_weights'\]: model_weights \(store: '[0-9a-f]{16}'"):
        write_store(tmp_path / "st", other, texts, HOOK, position=None)
    with pytest.raises(ValueError, match=r"differs in \['prompts_hash'\]"):
        write_store(tmp_path / "st", tiny_model, texts[:1], HOOK, position=None)
    assert len(write_store(tmp_path / "st", tiny_model, texts, HOOK, position=None)) > 2  # the same gather reuses


def test_eval_json_is_strict_json_with_null_for_what_was_not_measured(tiny_model, tmp_path, monkeypatch):
    from sae_lens import StandardSAEConfig

    monkeypatch.chdir(tmp_path)
    save_transformer(tiny_model, tmp_path / "model")
    stage1 = StandardSAE(StandardSAEConfig(d_in=tiny_model.cfg.d_model, d_sae=16))
    stage1.cfg.metadata.hook_name = HOOK
    aligned_from_sae(stage1, ["alpha", "beta"]).save_model(tmp_path / "al")
    rows = [dict(prompt=f"Q: {w} {c} A:", concept=c) for w in ("ann", "bob", "cat") for c in ("alpha", "beta")]
    (tmp_path / "o.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    _cli("eval", "--model", "model", "--ontology", "o.jsonl", "--sae", "al", "--out", "ev", "--no-swaps")
    text = (tmp_path / "ev" / "eval.json").read_text()

    def refuse(constant):
        raise ValueError(f"{constant} is not JSON")

    report = json.loads(text, parse_constant=refuse)  # NaN / Infinity would raise here
    assert report["summary"]["explained_variance_stage1"] is None and report["summary"]["swap_trials"] is None
    assert report["summary"]["binding_train"] is not None and (tmp_path / "ev" / ".align_lens_output").is_file()


def test_grokking_always_analyses_its_final_model(tmp_path):
    from align_lens.worlds.grokking import run_grokking
    from tests.worlds.test_grokking import TINY

    cfg = replace(TINY, out_dir=str(tmp_path / "g"), checkpoint_every=50, swap_items=4, alphas=(1.0,))
    # checkpoint_every > steps: only step 0 is on the grid, the final model is not
    assert [r["step"] for r in run_grokking(cfg)["seeds"][0]["rows"]] == [0, 10]


def test_device_is_parsed_the_way_torch_does():
    assert options.device("cpu:0") == options.device("cpu") == "cpu"  # "cpu:0" used to fail after the check
    with pytest.raises(ArgumentTypeError, match="unknown device 'gpu'"):
        options.device("gpu")


# ---- what is accepted --------------------------------------------------------------------------
def test_normalised_inputs_load(tmp_path):
    bom = _write(tmp_path, "excel.csv", "\ufeffprompt,concept\nx is,A \ny is,B\n".encode())
    assert Ontology.load(bom).names == ["A", "B"]  # BOM dropped, names stripped
    upper = _write(tmp_path, "UPPER.JSONL", "\n".join(json.dumps(r) for r in GOOD))
    onto = Ontology.load(upper)
    assert onto.names == ["a", "b"] and onto.select("train") == onto.examples
    assert Ontology(["x", " y "]).names == ["x", "y"]


def test_planted_pickle_never_runs(tmp_path):
    with pytest.raises(ValueError):
        _planted_checkpoint_file(tmp_path)
    assert not (tmp_path / "pwned").exists()
    with open(tmp_path / "direct.pt", "wb") as f:
        pickle.dump(Payload(tmp_path / "pwned"), f)
    with pytest.raises(ValueError, match="cannot read checkpoint"):
        checkpoint.load(tmp_path / "direct.pt")
    assert not (tmp_path / "pwned").exists()


# ---- arbitrary input to the ontology loaders ---------------------------------------------------
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
FIELD = st.sampled_from(["prompt", "concept", "answer", "entity", "split", "template", "x"])
RECORD = st.dictionaries(FIELD, st.none() | st.text(max_size=6) | st.integers() | JSON, max_size=6)
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def _only_ontology_or_error(load) -> None:
    try:
        result = load()
    except OntologyError:
        return
    assert isinstance(result, Ontology)


@SETTINGS
@given(data=st.binary(max_size=300), suffix=st.sampled_from([".jsonl", ".csv", ".json", ".JSONL"]))
def test_arbitrary_bytes(tmp_path, data, suffix):
    path = tmp_path / f"f{suffix}"
    path.write_bytes(data)
    _only_ontology_or_error(lambda: Ontology.load(path))


@SETTINGS
@given(value=JSON | st.lists(RECORD, max_size=5) | st.fixed_dictionaries({"concepts": JSON, "examples": JSON}))
def test_arbitrary_json_values(tmp_path, value):
    text = json.dumps(value)
    (tmp_path / "v.json").write_text(text)
    (tmp_path / "v.jsonl").write_text("\n".join(json.dumps(v) for v in value) if isinstance(value, list) else text)
    _only_ontology_or_error(lambda: Ontology.load(tmp_path / "v.json"))
    _only_ontology_or_error(lambda: Ontology.load(tmp_path / "v.jsonl"))
    _only_ontology_or_error(lambda: Ontology.from_records(value))
