"""Publishing: plain export exactness, Hub push against a fake HfApi, loading through SAELens' real loaders."""

import fnmatch
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from huggingface_hub.errors import EntryNotFoundError
from sae_lens import SAE, JumpReLUSAE, JumpReLUSAEConfig, StandardSAE, StandardSAEConfig, TopKSAE, TopKSAEConfig
from sae_lens.loading import pretrained_sae_loaders
from safetensors.torch import save_file

from align_lens import AlignedSAE, Ontology
from align_lens.evals.binding import binding_metrics
from align_lens.hub import PublishError, load_aligned, push_to_hub
from align_lens.saes.aligned import aligned_from_sae
from align_lens.saes.plain import aligned_from_plain, export_plain

CONCEPTS = ["a", "b", "c"]
REPO = "someone/tiny-align"
BASES = {
    "standard": lambda: StandardSAE(StandardSAEConfig(d_in=16, d_sae=32)),
    "jumprelu": lambda: JumpReLUSAE(JumpReLUSAEConfig(d_in=16, d_sae=32)),
    "topk": lambda: TopKSAE(TopKSAEConfig(d_in=16, d_sae=32, k=4)),
}


def make_aligned(base: str, seed: int = 0) -> AlignedSAE:
    torch.manual_seed(seed)
    aligned = aligned_from_sae(BASES[base](), CONCEPTS)
    with torch.no_grad():
        for p in aligned.parameters():  # random everything, incl. concept slots (which start at zero)
            p.copy_(torch.randn_like(p) * 0.3)
        if base == "jumprelu":  # free thresholds positive; concept slots' thresholds are unused and stay 0
            aligned.threshold.abs_()
            aligned.threshold[aligned.cfg.n_free :] = 0.0
    aligned.cfg.metrics = {"binding_accuracy": 0.9375, "recon": {"fve": 0.81}}
    aligned.cfg.concept_scales = [1.5, 2.0, 0.5]
    aligned.cfg.metadata.hook_name = "blocks.1.hook_resid_post"
    return aligned


def assert_same_weights(a: SAE, b: SAE) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


class FakeHfApi:
    """HfApi stand-in: a repo is a folder under `root`; the method named `fail` raises a 503."""

    def __init__(self, root: Path, fail: str | None = None):
        self.root, self.fail, self.calls = root, fail, []

    def _call(self, name):
        self.calls.append(name)
        if name == self.fail:
            raise ConnectionError("503 Service Unavailable")

    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None):
        self._call("create_repo")
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def create_branch(self, repo_id, branch, exist_ok=False):
        self._call("create_branch")

    def list_repo_files(self, repo_id, revision=None):
        self._call("list_repo_files")
        repo = self.root / repo_id
        return sorted(p.relative_to(repo).as_posix() for p in repo.rglob("*") if p.is_file())

    def upload_folder(
        self,
        repo_id,
        folder_path,
        path_in_repo=None,
        revision=None,
        repo_type=None,
        commit_message=None,
        delete_patterns=None,
    ):
        self._call("upload_folder")
        repo = self.root / repo_id / (path_in_repo or "")
        for path in self.list_repo_files(repo_id):
            if any(fnmatch.fnmatch(path, pat) for pat in delete_patterns or []):
                (repo / path).unlink()
        shutil.copytree(folder_path, repo, dirs_exist_ok=True)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """A fake remote under tmp_path/remote, served to SAELens' own hf_hub_download look-ups."""
    root = tmp_path / "remote"

    def fake_download(repo_id, filename, force_download=False, **kwargs):
        path = root / repo_id / filename
        if not path.exists():
            raise EntryNotFoundError(f"{filename} not in {repo_id}")
        return str(path)

    monkeypatch.setattr(pretrained_sae_loaders, "hf_hub_download", fake_download)
    return FakeHfApi(root)


# ---- plain export ----------------------------------------------------------------------
@pytest.mark.parametrize("base,cls", [("standard", StandardSAE), ("jumprelu", JumpReLUSAE)])
def test_plain_export_is_exact(tmp_path, base, cls):
    aligned = make_aligned(base)
    if base == "jumprelu":  # AlignedSAE ignores thresholds on concept slots; the export must not use them
        with torch.no_grad():
            aligned.threshold[aligned.cfg.n_free :] = 5.0
    export_plain(aligned, tmp_path / "plain")
    plain = SAE.load_from_disk(tmp_path / "plain")
    assert type(plain) is cls
    assert plain.state_dict().keys() == cls(plain.cfg).state_dict().keys()  # no extra tensors
    table = plain.cfg.metadata["align_lens"]
    assert table["concept_names"] == CONCEPTS and table["concept_slots"] == [32, 33, 34] and table["exact"]
    x = torch.randn(64, 16)
    torch.testing.assert_close(plain(x), aligned(x), atol=1e-5, rtol=0)
    torch.testing.assert_close(plain.encode(x)[:, table["concept_slots"]], aligned.concept_acts(x), atol=1e-6, rtol=0)
    assert aligned.concept_acts(x).gt(0).any()  # the slots are live, so the comparison means something


@pytest.mark.parametrize("base", list(BASES))
def test_load_aligned_rebuilds_from_plain(tmp_path, base):
    aligned = make_aligned(base)
    export_plain(aligned, tmp_path / "plain")
    back = load_aligned(tmp_path / "plain")
    assert type(back) is AlignedSAE
    assert_same_weights(back, aligned)
    for key in ("base_architecture", "concept_names", "concept_slots", "concept_scales", "k", "metrics"):
        assert getattr(back.cfg, key) == getattr(aligned.cfg, key), key
    assert "align_lens" not in back.cfg.metadata
    assert back.cfg.metadata.hook_name == "blocks.1.hook_resid_post"


def test_topk_plain_export_is_faithful_and_measured(tmp_path):
    aligned = make_aligned("topk")
    x = torch.randn(256, 16)
    with pytest.warns(UserWarning, match="pass activations="):
        export_plain(aligned, tmp_path / "unmeasured")
    export_plain(aligned, tmp_path / "plain", activations=x)
    plain = SAE.load_from_disk(tmp_path / "plain")
    table = plain.cfg.metadata["align_lens"]
    assert type(plain) is TopKSAE and plain.cfg.k == aligned.cfg.k + 3 and plain.cfg.d_sae == aligned.cfg.d_sae + 3
    assert table["fidelity"]["rows_differing"] == 0 and table["fidelity"]["n_rows"] == 256
    assert torch.equal(plain.W_dec[table["helper_latents"]], torch.zeros(3, 16))
    torch.testing.assert_close(plain(x), aligned(x), atol=1e-5, rtol=0)
    slots = plain.encode(x)[:, table["concept_slots"]] / table["slot_value_scale"]
    torch.testing.assert_close(slots, aligned.concept_acts(x), atol=1e-5, rtol=0)
    on = aligned.concept_acts(x) > 0
    assert on.any() and (~on).any()  # active and inactive slots both occur, so both cases are exercised
    assert table["concept_scales"] == [s * table["slot_value_scale"] for s in aligned.cfg.concept_scales]


def test_plain_rejects_sae_without_table():
    with pytest.raises(ValueError, match="aligned_from_sae"):
        aligned_from_plain(BASES["standard"]())


def test_plain_exports_load_without_align_lens(trained, tmp_path):
    """A fresh interpreter that never imports align_lens reads the plain exports (Standard and JumpReLU bases, and
    the TopK-based default pipeline's SAE) and matches the outputs: same slots, reconstruction and binding."""
    x = torch.randn(32, 16)
    expected = {}
    for base in ("standard", "jumprelu"):
        aligned = make_aligned(base)
        export_plain(aligned, tmp_path / base)
        expected[f"{base}_out"] = aligned(x).detach()
        expected[f"{base}_concepts"] = aligned.concept_acts(x).detach().contiguous()
    default, acts, onto = trained["aligned"], trained["heldout_acts"], trained["ontology"]
    assert default.cfg.base_architecture == "topk"
    export_plain(default, tmp_path / "topk", activations=acts)
    with torch.no_grad():
        z = default.encode(acts)
        expected |= {"topk_x": acts, "topk_slots": z[:, default.cfg.n_free :], "topk_recon": default.decode(z)}
    save_file({"x": x, **{k: v.contiguous() for k, v in expected.items()}}, tmp_path / "io.safetensors")
    code = f"""
import sys, torch
from safetensors.torch import load_file
from sae_lens import SAE
io = load_file({str(tmp_path / "io.safetensors")!r})
for base in ("standard", "jumprelu"):
    sae = SAE.load_from_disk({str(tmp_path)!r} + "/" + base)
    slots = sae.cfg.metadata["align_lens"]["concept_slots"]
    torch.testing.assert_close(sae(io["x"]), io[base + "_out"], atol=1e-5, rtol=0)
    torch.testing.assert_close(sae.encode(io["x"])[:, slots], io[base + "_concepts"], atol=1e-5, rtol=0)
    print(base, type(sae).__name__)
sae = SAE.load_from_disk({str(tmp_path / "topk")!r})
table = sae.cfg.metadata["align_lens"]
with torch.no_grad():
    z = sae.encode(io["topk_x"])
    slots = z[:, table["concept_slots"]] / table["slot_value_scale"]
    torch.testing.assert_close(slots, io["topk_slots"], atol=1e-4, rtol=1e-5)
    torch.testing.assert_close(sae.decode(z), io["topk_recon"], atol=1e-4, rtol=1e-5)
assert (slots.argmax(-1) == io["topk_slots"].argmax(-1)).all()
print(type(sae).__name__, table["fidelity"]["rows_differing"], len(io["topk_x"]))
assert "align_lens" not in sys.modules, "align_lens was imported"
print("OK")
"""
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == [
        "standard",
        "StandardSAE",
        "jumprelu",
        "JumpReLUSAE",
        "TopKSAE",
        "0",
        str(len(acts)),
        "OK",
    ]
    names = default.concept_names
    back = load_aligned(tmp_path / "topk")
    labels = onto.labels("heldout", order=names)
    binding = binding_metrics(back.concept_acts(acts), labels, names)["accuracy"]
    assert binding == binding_metrics(default.concept_acts(acts), labels, names)["accuracy"] > 0.9


# ---- push ------------------------------------------------------------------------------
def test_push_then_from_pretrained(hub, tmp_path):
    aligned = make_aligned("jumprelu")
    onto = Ontology(CONCEPTS)
    sparsity = torch.randn(35)
    paths = push_to_hub(aligned, REPO, "blocks.1.hook_resid_post", ontology=onto, sparsity=sparsity, api=hub)
    sae_files = ["cfg.json", "sae_weights.safetensors", "sparsity.safetensors"]
    folders = ("blocks.1.hook_resid_post", "blocks.1.hook_resid_post-plain")
    ontology_file = "blocks.1.hook_resid_post/ontology.json"  # only when asked for, and once
    assert paths == sorted(["README.md", ontology_file] + [f"{d}/{f}" for d in folders for f in sae_files])
    assert hub.list_repo_files(REPO) == paths

    sae, _, log_sparsity = SAE.from_pretrained_with_cfg_and_sparsity(REPO, "blocks.1.hook_resid_post")
    assert type(sae) is AlignedSAE
    assert_same_weights(sae, aligned)
    assert torch.equal(log_sparsity, sparsity)
    plain = SAE.from_pretrained(REPO, "blocks.1.hook_resid_post-plain")
    assert type(plain) is JumpReLUSAE
    assert_same_weights(load_aligned(REPO, "blocks.1.hook_resid_post-plain"), aligned)
    assert_same_weights(load_aligned(REPO, "blocks.1.hook_resid_post"), aligned)
    assert Ontology.from_json(hub.root / REPO / "blocks.1.hook_resid_post/ontology.json").names == CONCEPTS


def test_push_refuses_overwrite(hub):
    aligned = make_aligned("standard")
    push_to_hub(aligned, REPO, "layer_1", sparsity=torch.zeros(35), api=hub)
    with pytest.raises(FileExistsError, match=r"layer_1.*overwrite=True"):
        push_to_hub(aligned, REPO, "layer_1", api=hub)
    with pytest.raises(FileExistsError, match="layer_1-plain"):
        push_to_hub(aligned, REPO, "layer_1-plain", plain=False, api=hub)
    push_to_hub(aligned, REPO, "layer_1", overwrite=True, api=hub)
    assert "layer_1/sparsity.safetensors" not in hub.list_repo_files(REPO)  # stale file replaced, not kept


def test_second_sae_keeps_first_in_card(hub):
    push_to_hub(make_aligned("standard"), REPO, "layer_1", api=hub)
    push_to_hub(make_aligned("topk"), REPO, "layer_2", plain=False, api=hub)
    card = (hub.root / REPO / "README.md").read_text()
    assert "- `layer_1`\n- `layer_1-plain`\n- `layer_2`\n" in card
    assert "layer_2-plain" not in card


def test_dry_run_uploads_nothing(hub, capsys):
    paths = push_to_hub(make_aligned("standard"), REPO, "layer_1", dry_run=True, api=hub)
    assert hub.calls == [] and not hub.root.exists()
    assert "layer_1/sae_weights.safetensors" in paths and "layer_1-plain/cfg.json" in paths
    out = capsys.readouterr().out
    assert f"{REPO}/layer_1/sae_weights.safetensors" in out and "nothing was uploaded" in out


def test_failed_upload_keeps_staging(hub, tmp_path):
    hub.fail = "upload_folder"
    stage = tmp_path / "stage"
    with pytest.raises(PublishError) as err:
        push_to_hub(make_aligned("standard"), REPO, "layer_1", api=hub, staging_dir=stage)
    msg = str(err.value)
    assert str(stage) in msg and f"hf upload {REPO} {stage} . --revision main" in msg and "503" in msg
    assert (stage / "layer_1" / "sae_weights.safetensors").exists() and (stage / "README.md").exists()


def test_failed_upload_keeps_temporary_staging(hub):
    hub.fail = "upload_folder"
    with pytest.raises(PublishError, match="kept in") as err:
        push_to_hub(make_aligned("standard"), REPO, "layer_1", api=hub)
    stage = Path(str(err.value).split("kept in ")[1].split(";")[0])
    assert (stage / "layer_1-plain" / "cfg.json").exists()
    shutil.rmtree(stage)


def test_unreachable_hub_is_a_clear_error(hub):
    hub.fail = "create_repo"
    with pytest.raises(PublishError, match="nothing was uploaded.*hf auth login"):
        push_to_hub(make_aligned("standard"), REPO, "layer_1", api=hub)
    assert hub.calls == ["create_repo"]


def test_ontology_is_not_published_by_default(hub):
    aligned = make_aligned("standard")
    aligned.cfg.concept_counts, aligned.cfg.ontology_hash = [3, 4, 5], "0123456789abcdef"
    paths = push_to_hub(aligned, REPO, "layer_1", api=hub)
    assert not [p for p in paths if p.endswith("ontology.json")]
    cfg = json.loads((hub.root / REPO / "layer_1" / "cfg.json").read_text())
    assert cfg["concept_counts"] == [3, 4, 5] and cfg["ontology_hash"] == "0123456789abcdef"
    assert cfg["concept_names"] == CONCEPTS and cfg["concept_scales"] == [1.5, 2.0, 0.5]
    assert "| a | 32 | 1.5 | 3 |" in (hub.root / REPO / "README.md").read_text()


@pytest.mark.parametrize(
    "sae_id", ["", "/layer_1", "layer_1/", "a//b", "../x", "a/../../x", "..", "./x", "a/./b", "a\\b", "/tmp/x"]
)
def test_bad_sae_id(hub, tmp_path, sae_id):
    stage = tmp_path / "deep" / "stage"
    with pytest.raises(ValueError, match="sae_id"):
        push_to_hub(make_aligned("standard"), REPO, sae_id, api=hub, staging_dir=stage, dry_run=True)
    with pytest.raises(ValueError, match="sae_id"):
        push_to_hub(make_aligned("standard"), REPO, sae_id, api=hub)
    assert hub.calls == [] and list(tmp_path.rglob("*")) == []  # nothing written anywhere


def test_everything_is_staged_inside_the_staging_folder(tmp_path):
    stage = tmp_path / "a" / "stage"
    paths = push_to_hub(make_aligned("topk"), REPO, "x/y", staging_dir=stage, dry_run=True)
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == sorted(f"a/stage/{p}" for p in paths) and "x/y-plain/cfg.json" in paths


def test_card_quotes_and_escapes_concept_names(hub):
    aligned = make_aligned("standard")
    evil = ['")\nimport os\nos.system("echo pwned")#', "a|b", "line\nbreak"]
    aligned.cfg.concept_names = evil
    push_to_hub(aligned, REPO, "layer_1", api=hub)
    card = (hub.root / REPO / "README.md").read_text()
    assert "\nimport os" not in card and "| a\\|b |" in card and "| line break |" in card
    code = card.split("```python\n")[1].split("```")[0]
    compile(code, "card", "exec")  # valid Python whose only string literal is the name, quoted
    assert f"sae.concept_index({evil[0]!r})" in code


def test_bad_repo_and_ontology(hub):
    with pytest.raises(ValueError, match="owner/name"):
        push_to_hub(make_aligned("standard"), "tiny-align", "layer_1", api=hub)
    with pytest.raises(ValueError, match=r"only in the ontology: \['x'\]"):
        push_to_hub(make_aligned("standard"), REPO, "layer_1", ontology=Ontology(["a", "x", "c"]), api=hub)
    with pytest.raises(ValueError, match=r"shape \(35,\)"):
        push_to_hub(make_aligned("standard"), REPO, "layer_1", sparsity=torch.zeros(32), api=hub)
    with pytest.raises(ValueError, match="plain_suffix"):
        push_to_hub(make_aligned("standard"), REPO, "layer_1", plain_suffix="/plain", api=hub)
    assert hub.calls == []


def test_model_card(hub):
    push_to_hub(make_aligned("topk"), REPO, "layer_1", api=hub)
    card = (hub.root / REPO / "README.md").read_text()
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    assert front == "library_name: saelens\ntags:\n- sae\n- saelens\n- align_lens\n- alignsae\n"
    assert "| a | 32 | 1.5 |  |\n| b | 33 | 2 |  |\n| c | 34 | 0.5 |  |" in body
    assert "| binding_accuracy | 0.9375 |" in body and "| recon.fve | 0.81 |" in body
    assert f"import align_lens\nfrom sae_lens import SAE\n\nsae = SAE.from_pretrained('{REPO}', 'layer_1')" in body
    assert f"SAE.from_pretrained('{REPO}', 'layer_1-plain')" in body and "not measured" in body
    x = torch.randn(64, 16)
    push_to_hub(make_aligned("topk"), REPO, "layer_2", activations=x, api=hub)
    card = (hub.root / REPO / "README.md").read_text()
    assert "Measured on 64 activations: 0 rows differ" in card
