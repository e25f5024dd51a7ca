"""What the commands read and write: the model, the ontology, texts, SAE folders and output folders."""

from __future__ import annotations

import argparse
from pathlib import Path

from align_lens.cli.options import UsageError
from align_lens.files import check_output, output_folder


# ---- inputs ---------------------------------------------------------------------------------------
def existing(path: str, option: str, folder: bool = False) -> Path:
    """`path` after checking it exists (and is a folder when `folder`), else a UsageError naming `option`."""
    p = Path(path)
    if not p.exists():
        raise UsageError(f"{option} {path}: no such {'folder' if folder else 'file'}; check the path")
    if folder and not p.is_dir():
        raise UsageError(f"{option} {path} is a file; pass a folder")
    if not folder and p.is_dir():
        raise UsageError(f"{option} {path} is a folder; pass a file")
    return p


def load_model(spec: str, device: str):
    """--model: a folder saved by `align_lens.save_transformer`, or a TransformerLens model name (downloaded with
    `HookedTransformer.from_pretrained`)."""
    from align_lens import adapter

    path = Path(spec)
    if path.exists():
        if not (path / adapter.MODEL_CONFIG).is_file():
            raise UsageError(
                f"--model {spec} has no {adapter.MODEL_CONFIG}; pass a folder written by "
                "align_lens.save_transformer(model, path) or a TransformerLens model name such as gpt2"
            )
        return adapter.load_transformer(path, device=device)
    return adapter.load_pretrained(spec, device=device)


def model_name(spec: str, model) -> str:
    """The name recorded in an SAE's metadata: the TransformerLens name, else the model's config name."""
    return spec if not Path(spec).exists() else str(model.cfg.model_name)


def load_ontology(path: str):
    """An ontology file (.jsonl, .csv or .json), with errors naming the file and line."""
    from align_lens.ontology import Ontology

    return Ontology.load(existing(path, "--ontology"))


def read_texts(path: str) -> list[str]:
    """One text per non-empty line of a UTF-8 file."""
    p = existing(path, "--texts")
    try:
        texts = [t for t in p.read_text(encoding="utf-8-sig").splitlines() if t.strip()]
    except UnicodeDecodeError:
        raise UsageError(f"--texts {path} is not UTF-8 text; re-save it as UTF-8") from None
    if not texts:
        raise UsageError(f"--texts {path} has no non-empty line; write one text per line")
    return texts


def load_sae(path: str, option: str, device: str):
    """An SAE folder (cfg.json + weights) written by `sae.save_model`, any architecture."""
    from sae_lens import SAE
    from sae_lens.constants import SAE_CFG_FILENAME

    folder = existing(path, option, folder=True)
    if not (folder / SAE_CFG_FILENAME).is_file():
        raise UsageError(f"{option} {path} has no {SAE_CFG_FILENAME}; pass a folder written by sae.save_model(path)")
    return SAE.load_from_disk(folder, device=device)


# ---- outputs --------------------------------------------------------------------------------------
INPUT_OPTIONS = ("model", "ontology", "texts", "sae", "stage1", "store", "checkpoint_dir")  # paths a command reads


def _sources(a: argparse.Namespace) -> list[str]:
    return [str(getattr(a, k)) for k in INPUT_OPTIONS if getattr(a, k, None) is not None]


def check_out(a: argparse.Namespace) -> None:
    """Refuse an --out that a run could not replace safely (`files.check_output`), before any work."""
    check_output(a.out, a.overwrite, _sources(a))


def staged(a: argparse.Namespace):
    """A fresh folder beside --out to write into; it replaces --out only when the block succeeds, so a failed
    run leaves --out as it was and a rerun leaves no stale files."""
    return output_folder(a.out, a.overwrite, _sources(a))
