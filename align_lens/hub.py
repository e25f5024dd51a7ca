"""Publishing AlignedSAEs: a plain SAELens export, loading either form, and Hugging Face Hub upload.

Two forms of one SAE:
    aligned   cfg.json with architecture "aligned"; loads with `SAE.from_pretrained` after `import align_lens`.
    plain     an ordinary `standard` / `jumprelu` / `topk` SAE with the same weights and the concept table in
              `cfg.metadata.align_lens`; loads in any SAELens process, concept slots steerable by index.

The plain form is exact for standard and jumprelu bases (a concept slot's ReLU is a ReLU, or a JumpReLU
with threshold 0). A topk base cannot be written exactly: plain TopK ranks concept slots against free latents,
so the export uses k + n_concepts and records `exact: false`.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from jaxtyping import Float
from sae_lens import SAE
from sae_lens.constants import SAE_CFG_FILENAME, SPARSITY_FILENAME
from safetensors.torch import load_file, save_file
from torch import Tensor

from align_lens.ontology import Ontology
from align_lens.saes.aligned import AlignedSAE
from align_lens.saes.plain import aligned_from_plain, export_plain

METADATA_KEY = "align_lens"
ONTOLOGY_FILENAME = "ontology.json"
CARD_TAGS = ("sae", "saelens", "align_lens", "alignsae")


class PublishError(RuntimeError):
    """A Hub call that failed; after staging, the message names the staged folder and the retry command."""


# ---- plain export --------------------------------------------------------------------------


def load_aligned(repo_id_or_path: str | Path, sae_id: str | None = None, device: str = "cpu") -> AlignedSAE:
    """An AlignedSAE from a local folder or a Hub repo, in the aligned or the plain form.

    A local path is used when it exists (joined with `sae_id` if given); otherwise `repo_id_or_path`
    is a Hub repo id and `sae_id` the folder inside it.
    """
    local = Path(repo_id_or_path)
    if local.exists():
        sae = SAE.load_from_disk(local / sae_id if sae_id else local, device=device)
    elif sae_id is None:
        raise FileNotFoundError(f"{local} is not a local folder; to load from the Hub pass sae_id as well")
    else:
        _check_ids(str(repo_id_or_path), sae_id)
        sae = SAE.from_pretrained(str(repo_id_or_path), sae_id, device=device)
    return sae if isinstance(sae, AlignedSAE) else aligned_from_plain(sae)


# ---- model card ----------------------------------------------------------------------------
def _flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def model_card(
    aligned: AlignedSAE, repo_id: str, sae_id: str, plain_id: str | None, sae_ids: Sequence[str] = ()
) -> str:
    """README.md for the repo: front matter, concept table, metrics, and how to load both forms.

    `sae_ids` lists every SAE folder the repo will hold after this push.
    """
    cfg, meta = aligned.cfg, aligned.cfg.metadata
    tags = "".join(f"- {t}\n" for t in CARD_TAGS)
    table = zip(cfg.concept_names, cfg.concept_slots, cfg.concept_scales)
    concepts = "".join(f"| {n} | {s} | {_fmt(float(c))} |\n" for n, s, c in table)
    metrics = "".join(f"| {k} | {_fmt(v)} |\n" for k, v in _flat(cfg.metrics).items()) or "| (none recorded) | |\n"
    where = "an unrecorded hook"
    if meta.hook_name:
        where = f"`{meta.hook_name}`" + (f" of `{meta.model_name}`" if meta.model_name else "")
    lines = [
        f"---\nlibrary_name: saelens\ntags:\n{tags}---\n",
        f"# AlignSAE: `{sae_id}`\n",
        f"A concept-aligned sparse autoencoder (AlignSAE) made with align_lens, reading {where}.",
        f"Base architecture `{cfg.base_architecture}`, d_in {cfg.d_in}, d_sae {cfg.d_sae} "
        f"({cfg.n_free} free latents + {cfg.n_concepts} concept slots, the last {cfg.n_concepts} latents).\n",
        "## Concept slots\n",
        "| concept | latent index | typical on-value |\n|---|---|---|\n" + concepts,
        "## Metrics\n",
        "| metric | value |\n|---|---|\n" + metrics,
        "## Loading\n",
        "With align_lens (registers the `aligned` architecture):\n",
        "```python\nimport align_lens\nfrom sae_lens import SAE\n\n"
        f'sae = SAE.from_pretrained("{repo_id}", "{sae_id}")\n'
        f'slot = sae.concept_index("{cfg.concept_names[0]}")\n```\n',
    ]
    if plain_id:
        exactness = (
            "It reproduces the aligned SAE exactly."
            if cfg.base_architecture != "topk"
            else f"It is approximate: plain TopK keeps k={cfg.k}+{cfg.n_concepts} latents over all of them, so an "
            "inactive concept slot lets an extra free latent in and a weak one can be dropped "
            "(`exact: false` in its metadata)."
        )
        lines += [
            f"Without align_lens, `{plain_id}` is the same SAE as an ordinary `{cfg.base_architecture}` SAE; "
            f"its concept table is in `cfg.metadata.align_lens`. {exactness}\n",
            f'```python\nfrom sae_lens import SAE\n\nsae = SAE.from_pretrained("{repo_id}", "{plain_id}")\n'
            'table = sae.cfg.metadata["align_lens"]\n'
            'slot = table["concept_slots"][table["concept_names"].index("'
            f'{cfg.concept_names[0]}")]\n```\n',
        ]
    lines += ["## SAEs in this repo\n", "".join(f"- `{i}`\n" for i in sae_ids)]
    return "\n".join(lines)


# ---- Hub upload ----------------------------------------------------------------------------
def _check_ids(repo_id: str, sae_id: str) -> None:
    if repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise ValueError(f"repo_id must be 'owner/name' (SAE.from_pretrained needs the '/'), got {repo_id!r}")
    if not sae_id or sae_id.strip("/") != sae_id or "//" in sae_id or sae_id in (".", ".."):
        raise ValueError(
            "sae_id must be a non-empty folder name without leading or trailing '/' "
            f"(e.g. 'blocks.6.hook_resid_post'), got {sae_id!r}; SAELens reads '<sae_id>/cfg.json'"
        )


def _load_sparsity(sparsity: Tensor | str | Path, d_sae: int) -> Float[Tensor, " d_sae"]:
    tensor = load_file(str(sparsity))["sparsity"] if isinstance(sparsity, (str, Path)) else sparsity
    if tensor.shape != (d_sae,):
        shape = tuple(tensor.shape)
        raise ValueError(f"sparsity must have shape ({d_sae},) (log10 firing rate per latent), got {shape}")
    return tensor.detach().cpu().contiguous()


def _load_ontology(ontology: Ontology | str | Path, aligned: AlignedSAE) -> Ontology:
    onto = ontology if isinstance(ontology, Ontology) else Ontology.from_json(Path(ontology))
    if onto.names != aligned.concept_names:
        raise ValueError(
            f"ontology concepts {onto.names} differ from the SAE's concept slots {aligned.concept_names}; "
            "pass the ontology the SAE was aligned with"
        )
    return onto


def _stage(
    aligned: AlignedSAE,
    stage: Path,
    folders: dict[str, bool],
    ontology: Ontology | None,
    sparsity: Tensor | None,
    card: str,
) -> list[str]:
    """Write each SAE folder (`{sae_id: is_plain}`) and README.md under `stage`; return repo paths."""
    for folder, is_plain in folders.items():
        path = stage / folder
        if is_plain:
            export_plain(aligned, path)
        else:
            aligned.save_model(path)
        if sparsity is not None:
            save_file({"sparsity": sparsity}, path / SPARSITY_FILENAME)
        if ontology is not None:
            ontology.to_json(path / ONTOLOGY_FILENAME)
    (stage / "README.md").write_text(card)
    return sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())


def _repo_sae_ids(files: Sequence[str]) -> list[str]:
    return sorted(f[: -len(SAE_CFG_FILENAME) - 1] for f in files if f.endswith(f"/{SAE_CFG_FILENAME}"))


def _refuse_overwrite(repo_id: str, revision: str, files: Sequence[str], folders: Sequence[str]) -> None:
    taken = [f for f in folders if any(p.startswith(f"{f}/") for p in files)]
    if taken:
        raise FileExistsError(
            f"{repo_id}@{revision} already has SAE folder(s) {taken}; pass overwrite=True "
            "(CLI: --overwrite) to replace them, or choose another sae_id"
        )


def _retry_command(repo_id: str, stage: Path, revision: str, delete: Sequence[str]) -> str:
    cmd = ["hf", "upload", repo_id, str(stage), ".", "--revision", revision]
    for folder in delete:
        cmd += ["--delete", f"{folder}/*"]
    return shlex.join(cmd)


def _remote_files(api: HfApi, repo_id: str, revision: str, private: bool) -> list[str]:
    """Create the repo (and branch) if missing; list its files at `revision`."""
    try:
        api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        if revision != "main":
            api.create_branch(repo_id, branch=revision, exist_ok=True)
        return api.list_repo_files(repo_id, revision=revision)
    except Exception as e:
        raise PublishError(
            f"could not prepare {repo_id}@{revision} on the Hub ({type(e).__name__}: {e}); nothing was uploaded. "
            "Check the network and the token (HF_TOKEN or `hf auth login`)."
        ) from e


def _upload(api: HfApi, stage: Path, repo_id: str, sae_id: str, revision: str, replace: Sequence[str]) -> None:
    """One commit of the whole staging folder; on failure keep it and say how to retry."""
    try:
        api.upload_folder(
            repo_id=repo_id,
            folder_path=stage,
            revision=revision,
            repo_type="model",
            commit_message=f"Upload AlignSAE {sae_id}",
            delete_patterns=[f"{f}/*" for f in replace] or None,
        )
    except Exception as e:
        raise PublishError(
            f"upload to {repo_id}@{revision} failed ({type(e).__name__}: {e}). The staged files are kept in "
            f"{stage}; retry with:\n  {_retry_command(repo_id, stage, revision, replace)}"
        ) from e


def push_to_hub(
    aligned: AlignedSAE,
    repo_id: str,
    sae_id: str,
    private: bool = False,
    revision: str = "main",
    plain: bool = True,
    plain_suffix: str = "-plain",
    overwrite: bool = False,
    ontology: Ontology | str | Path | None = None,
    sparsity: Tensor | str | Path | None = None,
    dry_run: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
    staging_dir: str | Path | None = None,
) -> list[str]:
    """Upload `aligned` to `repo_id/<sae_id>` (and its plain export to `<sae_id><plain_suffix>`) in one commit.

    Files go to a staging folder first (`staging_dir`, or a temporary one removed after success).
    `dry_run` stages and prints the files with their sizes but contacts nothing. `token` defaults to the
    usual huggingface_hub sources (HF_TOKEN, `hf auth login`). Returns the repo paths uploaded.
    """
    if not isinstance(aligned, AlignedSAE):
        raise TypeError(f"expected an AlignedSAE, got {type(aligned).__name__}; load one with load_aligned(path)")
    if aligned.cfg.normalize_activations == "expected_average_only_in":
        raise ValueError("fold the norm scaling factor in first (sae.fold_activation_norm_scaling_factor)")
    _check_ids(repo_id, sae_id)
    if plain and (not plain_suffix or "/" in plain_suffix):
        raise ValueError(
            f"plain_suffix must be non-empty and without '/' (got {plain_suffix!r}): it names a sibling folder"
        )
    if staging_dir and Path(staging_dir).exists() and any(Path(staging_dir).iterdir()):
        raise FileExistsError(f"staging folder {staging_dir} is not empty; pass an empty or new folder")
    folders = {sae_id: False} | ({sae_id + plain_suffix: True} if plain else {})
    onto = None if ontology is None else _load_ontology(ontology, aligned)
    sp = None if sparsity is None else _load_sparsity(sparsity, aligned.cfg.d_sae)

    existing: list[str] = []
    if not dry_run:
        api = api or HfApi(token=token)
        existing = _remote_files(api, repo_id, revision, private)
        if not overwrite:
            _refuse_overwrite(repo_id, revision, existing, list(folders))

    stage = Path(staging_dir) if staging_dir else Path(tempfile.mkdtemp(prefix="align_lens_publish_"))
    plain_id = sae_id + plain_suffix if plain else None
    card = model_card(aligned, repo_id, sae_id, plain_id, sorted(set(_repo_sae_ids(existing)) | set(folders)))
    paths = _stage(aligned, stage, folders, onto, sp, card)
    if dry_run:
        for p in paths:
            print(f"{(stage / p).stat().st_size:>12,d}  {repo_id}/{p}")
        print(f"dry run: {len(paths)} files would be uploaded to {repo_id}@{revision}; nothing was uploaded")
    else:
        _upload(api, stage, repo_id, sae_id, revision, list(folders) if overwrite else [])
    if not staging_dir:
        shutil.rmtree(stage)
    return paths


# ---- CLI -----------------------------------------------------------------------------------
def _publish_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="align-lens publish",
        description="Upload a saved AlignedSAE (and its plain SAELens export) to the Hugging Face Hub. "
        "The token comes from HF_TOKEN or `hf auth login`. SAE_DIR/sparsity.safetensors and "
        "SAE_DIR/ontology.json are included when present.",
    )
    p.add_argument("sae_dir", metavar="SAE_DIR", type=Path, help="folder with cfg.json + sae_weights.safetensors")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub repo, 'owner/name'")
    p.add_argument("--sae-id", required=True, help="folder inside the repo, e.g. blocks.6.hook_resid_post")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    p.add_argument("--revision", default="main", help="branch to commit to (default: main)")
    p.add_argument("--no-plain", dest="plain", action="store_false", help="skip the plain SAELens export")
    p.add_argument("--overwrite", action="store_true", help="replace SAE folders that already exist in the repo")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; upload nothing")
    p.add_argument("--ontology", type=Path, help="ontology JSON (Ontology.to_json) to upload beside the SAE")
    return p


def publish_main(argv: Sequence[str] | None = None) -> int:
    """`align-lens publish`: returns the exit status."""
    parser = _publish_parser()
    args = parser.parse_args(argv)
    if not args.sae_dir.is_dir():
        parser.error(f"SAE_DIR {args.sae_dir} is not a folder (save one with sae.save_model(path))")
    ontology, sparsity = args.sae_dir / ONTOLOGY_FILENAME, args.sae_dir / SPARSITY_FILENAME
    try:
        aligned = load_aligned(args.sae_dir)
        paths = push_to_hub(
            aligned,
            args.repo_id,
            args.sae_id,
            private=args.private,
            revision=args.revision,
            plain=args.plain,
            overwrite=args.overwrite,
            ontology=args.ontology or (ontology if ontology.exists() else None),
            sparsity=sparsity if sparsity.exists() else None,
            dry_run=args.dry_run,
        )
    except (ValueError, TypeError, OSError, PublishError) as e:
        parser.exit(1, f"{parser.prog}: error: {e}\n")
    if not args.dry_run:
        print(f"uploaded {len(paths)} files to https://huggingface.co/{args.repo_id}/tree/{args.revision}")
    return 0
