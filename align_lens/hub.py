"""Publishing AlignedSAEs: loading either form, the model card, and Hugging Face Hub upload.

Two forms of one SAE (see align_lens.saes.plain):
    aligned   cfg.json with architecture "aligned"; loads with `SAE.from_pretrained` after `import align_lens`.
    plain     an ordinary `standard` / `jumprelu` / `topk` SAE with the concept table in
              `cfg.metadata.align_lens`; loads in any SAELens process, concept slots steerable by index.

Ids are checked part by part ("..", ".", empty parts, absolute paths and backslashes are refused), and every
file is staged inside the staging folder. The ontology is uploaded only when passed (`ontology=`); the concept
table (names, slots, scales, example counts, ontology hash) is always in cfg.json.
"""

from __future__ import annotations

import re
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import HfApi
from jaxtyping import Float
from sae_lens import SAE
from sae_lens.constants import SAE_CFG_FILENAME, SAE_WEIGHTS_FILENAME, SPARSITY_FILENAME
from safetensors.torch import load_file, save_file
from torch import Tensor

from align_lens.files import check_safetensors, read_json
from align_lens.ontology import Ontology
from align_lens.saes.aligned import AlignedSAE
from align_lens.saes.plain import METADATA_KEY, aligned_from_plain, export_plain

CARD_TAGS = ("sae", "saelens", "align_lens", "alignsae")


class PublishError(RuntimeError):
    """A Hub call that failed; after staging, the message names the staged folder and the retry command."""


# ---- loading -------------------------------------------------------------------------------
def _looks_local(source: str | Path) -> bool:
    """A Path, or text that cannot be a Hub 'owner/name' id or whose first part is a local folder."""
    if isinstance(source, Path):
        return True
    text = str(source)
    return text.startswith((".", "/", "~")) or "\\" in text or text.count("/") != 1 or Path(text.split("/")[0]).is_dir()


def _load_local(path: Path, device: str) -> SAE:
    """SAE.load_from_disk after checking the folder's files, so a missing or damaged file is named."""
    if path.is_file():
        raise NotADirectoryError(
            f"{path} is a file, not an SAE folder; pass the folder holding {SAE_CFG_FILENAME} and "
            f"{SAE_WEIGHTS_FILENAME} (written by save_model)."
        )
    if not path.is_dir():
        raise FileNotFoundError(
            f"SAE folder {path} does not exist (looked for it locally; nothing was downloaded). To load from the "
            "Hub pass a repo id 'owner/name' and sae_id."
        )
    read_json(path / SAE_CFG_FILENAME, "SAE config")
    check_safetensors(path / SAE_WEIGHTS_FILENAME, "SAE weights")
    return SAE.load_from_disk(path, device=device)


def load_aligned(repo_id_or_path: str | Path, sae_id: str | None = None, device: str = "cpu") -> AlignedSAE:
    """An AlignedSAE from a local folder or a Hub repo, in the aligned or the plain form.

    A path that exists, or that looks local (a Path, starts with '.', '/' or '~', has a backslash, is not of
    the form 'owner/name', or starts with an existing folder), is read from disk (joined with `sae_id` if
    given) and never sent to the Hub; otherwise `repo_id_or_path` is a Hub repo id and `sae_id` the folder in it.
    """
    local = Path(repo_id_or_path)
    if local.exists() or _looks_local(repo_id_or_path) or sae_id is None:
        if sae_id is not None:
            _check_sae_id(sae_id)
        sae = _load_local(local / sae_id if sae_id else local, device)
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


def _cell(value: Any) -> str:
    """Text safe inside a Markdown table cell: `|` escaped, line breaks and backticks neutralised."""
    text = " ".join(_fmt(value).splitlines())
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("`", "\\`").replace("<", "&lt;")


def _fidelity_text(table: dict[str, Any] | None, base: str) -> str:
    if base != "topk" or table is None:
        return "It reproduces the aligned SAE exactly."
    text = (
        "Plain TopK ranks every latent, so each slot's encoder is scaled up (slot values are "
        f"{_fmt(table['slot_value_scale'])} times the aligned ones) and gets a helper latent with a zero decoder "
        "row; it then equals the aligned SAE except where a slot's pre-activation is about 0. "
    )
    fid = table.get("fidelity")
    if not fid:
        return text + "**The difference was not measured for this export.**"
    return text + (
        f"Measured on {fid['n_rows']} activations: {fid['rows_differing']} rows differ, max reconstruction "
        f"difference {_fmt(fid['max_abs_reconstruction_diff'])}, max slot difference "
        f"{_fmt(fid['max_abs_slot_diff'])}, slot argmax agreement {_fmt(fid['slot_argmax_agreement'])}."
    )


def model_card(
    aligned: AlignedSAE,
    repo_id: str,
    sae_id: str,
    plain_id: str | None,
    sae_ids: Sequence[str] = (),
    plain_table: dict[str, Any] | None = None,
) -> str:
    """README.md for the repo: front matter, concept table, metrics, and how to load both forms.

    `sae_ids` lists every SAE folder the repo will hold after this push; `plain_table` is the plain export's
    concept table (for its measured fidelity). Concept names are quoted with `repr` in code and escaped in tables.
    """
    cfg, meta = aligned.cfg, aligned.cfg.metadata
    tags = "".join(f"- {t}\n" for t in CARD_TAGS)
    counts = cfg.concept_counts or [""] * cfg.n_concepts
    table = zip(cfg.concept_names, cfg.concept_slots, cfg.concept_scales, counts)
    concepts = "".join(f"| {_cell(n)} | {s} | {_fmt(float(c))} | {k} |\n" for n, s, c, k in table)
    metrics = "".join(f"| {_cell(k)} | {_cell(v)} |\n" for k, v in _flat(cfg.metrics).items())
    where = "an unrecorded hook"
    if meta.hook_name:
        where = f"`{_cell(meta.hook_name)}`" + (f" of `{_cell(meta.model_name)}`" if meta.model_name else "")
    first = cfg.concept_names[0]
    lines = [
        f"---\nlibrary_name: saelens\ntags:\n{tags}---\n",
        f"# AlignSAE: `{sae_id}`\n",
        f"A concept-aligned sparse autoencoder (AlignSAE) made with align_lens, reading {where}.",
        f"Base architecture `{cfg.base_architecture}`, d_in {cfg.d_in}, d_sae {cfg.d_sae} "
        f"({cfg.n_free} free latents + {cfg.n_concepts} concept slots, the last {cfg.n_concepts} latents).\n",
        "## Concept slots\n",
        "| concept | latent index | typical on-value | training examples |\n|---|---|---|---|\n" + concepts,
        f"Ontology hash: `{cfg.ontology_hash}` (the ontology itself is not part of this folder unless listed).\n"
        if cfg.ontology_hash
        else "",
        "## Metrics\n",
        "| metric | value |\n|---|---|\n" + (metrics or "| (none recorded) | |\n"),
        "## Loading\n",
        "With align_lens (registers the `aligned` architecture):\n",
        "```python\nimport align_lens\nfrom sae_lens import SAE\n\n"
        f"sae = SAE.from_pretrained({repo_id!r}, {sae_id!r})\n"
        f"slot = sae.concept_index({first!r})\n```\n",
    ]
    if plain_id:
        lines += [
            f"Without align_lens, `{plain_id}` is the same SAE as an ordinary `{cfg.base_architecture}` SAE; "
            f"its concept table is in `cfg.metadata.align_lens`. {_fidelity_text(plain_table, cfg.base_architecture)}\n",
            f"```python\nfrom sae_lens import SAE\n\nsae = SAE.from_pretrained({repo_id!r}, {plain_id!r})\n"
            'table = sae.cfg.metadata["align_lens"]\n'
            f'slot = table["concept_slots"][table["concept_names"].index({first!r})]\n```\n',
        ]
    lines += ["## SAEs in this repo\n", "".join(f"- `{i}`\n" for i in sae_ids)]
    return "\n".join(lines)


# ---- Hub upload ----------------------------------------------------------------------------
_ID_PART = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def _check_sae_id(sae_id: str) -> None:
    """A relative folder path whose parts are plain names: never absolute, '.', '..', empty or with '\\'."""
    parts = sae_id.split("/") if isinstance(sae_id, str) else []
    bad = not parts or any(p in ("", ".", "..") or "\\" in p or ":" in p or p != p.strip() for p in parts)
    if bad or sae_id.startswith("~") or any(ord(ch) < 32 for ch in sae_id):
        raise ValueError(
            "sae_id must be a relative folder path of plain names (no empty parts, '.', '..', '\\', ':' or "
            f"leading '/'), e.g. 'blocks.6.hook_resid_post'; got {sae_id!r}. SAELens reads '<sae_id>/cfg.json'."
        )


def _check_ids(repo_id: str, sae_id: str) -> None:
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_ID_PART.fullmatch(p) and ".." not in p for p in parts):
        raise ValueError(
            "repo_id must be 'owner/name' of letters, digits, '.', '_' and '-' (SAE.from_pretrained needs the '/'), "
            f"got {repo_id!r}"
        )
    _check_sae_id(sae_id)


def _inside(stage: Path, folder: str) -> Path:
    """`stage / folder`, refusing anything that would resolve outside `stage`."""
    path = (stage / folder).resolve()
    if not path.is_relative_to(stage.resolve()) or path == stage.resolve():
        raise ValueError(f"{folder!r} would be written outside the staging folder {stage}; refusing.")
    return path


def _load_sparsity(sparsity: Tensor | str | Path, d_sae: int) -> Float[Tensor, " d_sae"]:
    tensor = load_file(str(sparsity))["sparsity"] if isinstance(sparsity, (str, Path)) else sparsity
    if tensor.shape != (d_sae,):
        shape = tuple(tensor.shape)
        raise ValueError(f"sparsity must have shape ({d_sae},) (log10 firing rate per latent), got {shape}")
    return tensor.detach().cpu().contiguous()


def _load_ontology(ontology: Ontology | str | Path, aligned: AlignedSAE) -> Ontology:
    onto = ontology if isinstance(ontology, Ontology) else Ontology.from_json(Path(ontology))
    onto.check_names(aligned.concept_names)
    return onto


def _stage(
    aligned: AlignedSAE,
    stage: Path,
    folders: dict[str, bool],
    ontology: Ontology | None,
    sparsity: Tensor | None,
    activations: Tensor | None,
) -> dict[str, Any] | None:
    """Write each SAE folder (`{sae_id: is_plain}`) under `stage`; return the plain export's concept table."""
    table = None
    for folder, is_plain in folders.items():
        path = _inside(stage, folder)
        if is_plain:
            export_plain(aligned, path, activations)
            table = read_json(path / SAE_CFG_FILENAME, "plain SAE config")["metadata"][METADATA_KEY]
        else:
            aligned.save_model(path, ontology=ontology)
        if sparsity is not None:
            save_file({"sparsity": sparsity}, path / SPARSITY_FILENAME)
    return table


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
    activations: Float[Tensor, "n d_in"] | None = None,
    dry_run: bool = False,
    token: str | None = None,
    api: HfApi | None = None,
    staging_dir: str | Path | None = None,
) -> list[str]:
    """Upload `aligned` to `repo_id/<sae_id>` (and its plain export to `<sae_id><plain_suffix>`) in one commit.

    The ontology is uploaded (as `<sae_id>/ontology.json`) only when `ontology` is given; the concept table is
    always in cfg.json. `activations` (real ones, at the SAE's hook) measure the plain TopK export's remaining
    difference for the card. Files go to a staging folder first (`staging_dir`, or a temporary one removed after
    success); nothing is written outside it.
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
    if plain:
        _check_sae_id(sae_id + plain_suffix)
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
    try:
        table = _stage(aligned, stage, folders, onto, sp, activations)
        sae_ids = sorted(set(_repo_sae_ids(existing)) | set(folders))
        (stage / "README.md").write_text(model_card(aligned, repo_id, sae_id, plain_id, sae_ids, table))
    except BaseException:
        if not staging_dir:
            shutil.rmtree(stage, ignore_errors=True)
        raise
    paths = sorted(p.relative_to(stage).as_posix() for p in stage.rglob("*") if p.is_file())
    if dry_run:
        for p in paths:
            print(f"{(stage / p).stat().st_size:>12,d}  {repo_id}/{p}")
        print(f"dry run: {len(paths)} files would be uploaded to {repo_id}@{revision}; nothing was uploaded")
    else:
        assert api is not None  # created above when not a dry run
        _upload(api, stage, repo_id, sae_id, revision, list(folders) if overwrite else [])
    if not staging_dir:
        shutil.rmtree(stage)
    return paths
