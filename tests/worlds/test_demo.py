import json
from html.parser import HTMLParser

import pytest
from sae_lens import SAE

from align_lens import AlignConfig, AlignedSAE, Stage1Config
from align_lens.cli import main
from align_lens.files import strict_json
from align_lens.worlds.demo import BPE_HOOK, DemoConfig, bpe_demo_config, run_demo

REDUCED = dict(
    n_people=40,
    stage1=Stage1Config(d_sae=256, k=8, steps=60, batch_size=256, dead_feature_window=50, init_b_dec="mean"),
    align=AlignConfig(epochs=2, batch_size=128),
    alphas=(1.0, 2.0),
    swap_items=4,
    task_items=24,
    progress=False,
)


class _Checker(HTMLParser):
    def __init__(self):
        super().__init__()
        self.stack, self.tags = [], set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        if tag not in ("meta", "br", "img", "input", "link"):
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}>"
        self.stack.pop()


@pytest.mark.slow  # ~18 s on a busy 2-core machine: the default suite stays under 3 minutes
def test_reduced_demo_writes_every_output(tmp_path):
    out = tmp_path / "demo"
    record = run_demo(DemoConfig(out_dir=str(out), **REDUCED))
    for f in [
        "aligned_sae/cfg.json",
        "aligned_sae/sae_weights.safetensors",
        "ontology.json",
        "stage1_sae/cfg.json",
        "results.json",
        "report.html",
    ]:
        assert (out / f).is_file(), f
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # no staging folder left behind
    assert sorted(p.name for p in (out / "aligned_sae").iterdir()) == ["cfg.json", "sae_weights.safetensors"]
    sae = SAE.load_from_disk(out / "aligned_sae")
    assert isinstance(sae, AlignedSAE) and len(sae.cfg.concept_names) == 6
    saved = json.loads((out / "results.json").read_text())
    assert (
        saved["summary"] == json.loads(strict_json(record["summary"])) and 0 <= saved["summary"]["binding_heldout"] <= 1
    )
    page = (out / "report.html").read_text()
    checker = _Checker()
    checker.feed(page)
    assert not checker.stack and {"html", "table", "script"} <= checker.tags
    assert page.count("Plotly.newPlot") >= 4 and '<script src="http' not in page  # figures inline, works offline

    with pytest.raises(FileExistsError, match="overwrite"):
        run_demo(DemoConfig(out_dir=str(out), **REDUCED))
    assert (out / "report.html").read_text() == page  # nothing already saved was lost

    ev = tmp_path / "eval"
    argv = [
        "eval",
        "--world",
        "bio",
        "--sae",
        str(out / "aligned_sae"),
        "--stage1",
        str(out / "stage1_sae"),
        "--out",
        str(ev),
        "--n-people",
        "40",
        "--swap-items",
        "4",
        "--task-items",
        "24",
    ]
    assert main(argv) == 0
    again = json.loads((ev / "eval.json").read_text())["summary"]
    assert again["binding_heldout"] == pytest.approx(record["summary"]["binding_heldout"], abs=1e-6)
    assert "Plotly.newPlot" in (ev / "eval.html").read_text()


@pytest.mark.slow
def test_full_demo(tmp_path):
    record = run_demo(DemoConfig(out_dir=str(tmp_path / "full"), progress=False))
    s = record["summary"]
    assert s["binding_heldout"] >= 0.95 and s["binding_train"] >= 0.99
    assert s["swap_exact_best"] >= 0.5


@pytest.mark.slow  # ~30 s: the fast suite has the same model through the CLI (tests/cli/test_gpt2_shaped.py)
def test_bpe_demo_runs_on_the_shipped_gpt2_shaped_model(tmp_path):
    """`bpe_demo_config` (`align-lens demo --world bio-bpe`): the shipped GPT-2-shaped model, its world, its hook."""
    out = tmp_path / "bpe"
    small = {k: v for k, v in REDUCED.items() if k != "n_people"}
    record = run_demo(bpe_demo_config(out_dir=str(out), n_people=12, **small))
    assert record["config"]["world"] == "bio-bpe" and record["config"]["hook_name"] == BPE_HOOK
    sae = SAE.load_from_disk(out / "aligned_sae")
    assert isinstance(sae, AlignedSAE) and sae.cfg.d_in == 256 and sae.cfg.metadata.hook_name == BPE_HOOK
    s = record["summary"]
    assert s["task_acc_clean"] >= 0.6  # multi-token answers, exact: the model answers its held-out phrasings
    assert 0 <= s["binding_heldout"] <= 1 and 0 <= s["swap_exact_best"] <= 1
    assert "BPE biography world" in (out / "report.html").read_text()


def test_demo_world_is_checked(tmp_path):
    with pytest.raises(ValueError, match="'bio' or 'bio-bpe'"):
        run_demo(DemoConfig(out_dir=str(tmp_path / "out"), world="gpt2"))
    assert list(tmp_path.iterdir()) == []  # nothing left behind
