"""`align-lens pretrain --store` / `align --texts --store`: token activations gathered into an on-disk store that
training streams; a rerun reuses the finished store, a folder of something else is refused."""

import torch
from sae_lens import SAE

from align_lens.activations.store import ActivationStore
from align_lens.cli import main


def _code(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:
        return int(exit_.code or 0)


SMALL = ["--world", "bio", "--n-people", "20", "--d-sae", "64", "--k", "4", "--steps", "20", "--batch-size", "64"]


def test_pretrain_streams_from_a_store_and_matches_memory(tmp_path, capsys):
    store = tmp_path / "store"
    assert main(["pretrain", "--out", str(tmp_path / "mem"), *SMALL]) == 0
    assert main(["pretrain", "--out", str(tmp_path / "disk"), "--store", str(store), *SMALL]) == 0
    opened = ActivationStore(store)
    assert len(opened) > 64 and opened.manifest["position"] == "every_token"
    mem, disk = SAE.load_from_disk(tmp_path / "mem"), SAE.load_from_disk(tmp_path / "disk")
    assert torch.equal(mem.W_dec, disk.W_dec)  # the store path trains the same SAE bit for bit
    shards = sorted(p.stat().st_mtime_ns for p in store.glob("shard_*"))
    assert main(["pretrain", "--out", str(tmp_path / "again"), "--store", str(store), *SMALL]) == 0
    assert sorted(p.stat().st_mtime_ns for p in store.glob("shard_*")) == shards  # reused, not re-gathered
    capsys.readouterr()


def test_store_refuses_a_folder_of_something_else(tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    assert _code(["pretrain", "--out", str(tmp_path / "s1"), "--store", str(other), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "not an activation store" in err and len(err.strip().splitlines()) == 1
    assert (other / "keep.txt").read_text() == "mine" and sorted(p.name for p in other.iterdir()) == ["keep.txt"]


def test_align_store_needs_texts(tmp_path, capsys):
    assert _code(["align", "--sae", str(tmp_path), "--out", str(tmp_path / "a"), "--store", str(tmp_path / "st")]) == 2
    assert "--store" in capsys.readouterr().err
