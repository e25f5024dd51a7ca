"""`publish`: upload a saved aligned SAE (and its plain SAELens export) to the Hugging Face Hub."""

from __future__ import annotations

import argparse
from pathlib import Path

from align_lens.cli import inputs
from align_lens.cli.options import UsageError
from align_lens.hub import push_to_hub


def add_publish(sub, common) -> None:
    p = sub.add_parser(
        "publish",
        parents=[common],
        help="push an aligned SAE to the Hugging Face Hub",
        description="Upload a saved AlignedSAE (and its plain SAELens export) to the Hugging Face Hub in one "
        "commit. The token comes from HF_TOKEN or `hf auth login`. SAE_DIR/sparsity.safetensors is included "
        "when present; the ontology only when --ontology is given.",
    )
    p.add_argument("sae_dir", metavar="SAE_DIR", help="folder with cfg.json + sae_weights.safetensors")
    p.add_argument("repo_id", metavar="REPO_ID", help="Hub repo, 'owner/name'")
    p.add_argument("--sae-id", required=True, help="folder inside the repo, e.g. blocks.6.hook_resid_post")
    p.add_argument("--private", action="store_true", help="create the repo private (if it does not exist)")
    p.add_argument("--revision", default="main", help="branch to commit to (default: main)")
    p.add_argument("--no-plain", dest="plain", action="store_false", help="skip the plain SAELens export")
    p.add_argument("--overwrite", action="store_true", help="replace SAE folders that already exist in the repo")
    p.add_argument("--dry-run", action="store_true", help="list the files and sizes; upload nothing")
    p.add_argument("--ontology", default=None, help="ontology file (.jsonl, .csv or .json) to upload beside the SAE")
    p.add_argument(
        "--texts",
        default=None,
        help="text file (one per line): its token activations measure the plain TopK export's difference from the "
        "aligned SAE, recorded in the model card (with --model; default: not measured, with a warning)",
    )
    p.add_argument(
        "--model", default=None, help="the model the SAE reads (with --texts): a save_transformer folder or a name"
    )
    p.set_defaults(run=run_publish)


def run_publish(a: argparse.Namespace) -> int:
    from sae_lens.constants import SPARSITY_FILENAME

    from align_lens.hub import load_aligned

    folder = inputs.existing(a.sae_dir, "SAE_DIR", folder=True)
    ontology = None if a.ontology is None else inputs.load_ontology(a.ontology)
    sparsity = Path(folder) / SPARSITY_FILENAME
    aligned = load_aligned(folder, device=a.device)
    activations = None
    if (a.texts is None) != (a.model is None):
        raise UsageError("--texts and --model measure the plain export together; pass both or neither")
    if a.texts is not None:
        from align_lens.activations.gather import gather_token_activations
        from align_lens.adapter import check_sae_fits

        model = inputs.load_model(a.model, a.device)
        activations = gather_token_activations(model, inputs.read_texts(a.texts), check_sae_fits(model, aligned))
    paths = push_to_hub(
        aligned,
        a.repo_id,
        a.sae_id,
        private=a.private,
        revision=a.revision,
        plain=a.plain,
        overwrite=a.overwrite,
        ontology=ontology,
        sparsity=sparsity if sparsity.exists() else None,
        activations=activations,
        dry_run=a.dry_run,
    )
    if not a.dry_run:
        print(f"uploaded {len(paths)} files to https://huggingface.co/{a.repo_id}/tree/{a.revision}")
    return 0
