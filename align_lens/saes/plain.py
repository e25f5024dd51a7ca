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

import copy
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

from sae_lens import SAE, SAEConfig
from sae_lens.registry import get_sae_class
from torch import Tensor

from align_lens.saes.aligned import AlignedSAE, AlignedSAEConfig

METADATA_KEY = "align_lens"


def _concept_table(aligned: AlignedSAE) -> dict[str, Any]:
    cfg = aligned.cfg
    exact = cfg.base_architecture != "topk"
    return {
        "concept_names": list(cfg.concept_names),
        "concept_slots": list(cfg.concept_slots),
        "concept_scales": list(cfg.concept_scales),
        "base_architecture": cfg.base_architecture,
        "version": version("align_lens"),
        "exact": exact,
        "k": cfg.k,
        "note": None if exact else f"approximate: plain TopK keeps k={cfg.k}+{cfg.n_concepts} over all latents",
        "align_config": copy.deepcopy(cfg.align_config),
        "metrics": copy.deepcopy(cfg.metrics),
    }


def _build(sae_cls: type[SAE], cfg: SAEConfig, state: dict[str, Tensor]) -> SAE:
    """Instantiate on the meta device and assign `state` (as SAELens' loaders do)."""
    device, cfg.device = cfg.device, "meta"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # model_from_pretrained_kwargs notice
        sae = sae_cls(cfg)
    sae.cfg.device = device
    sae.load_state_dict(state, strict=True, assign=True)
    return sae


def plain_sae(aligned: AlignedSAE) -> SAE:
    """The same dictionary as an ordinary SAELens SAE of the base architecture (a copy)."""
    if not isinstance(aligned, AlignedSAE):
        raise TypeError(f"expected an AlignedSAE, got {type(aligned).__name__}")
    base = aligned.cfg.base_architecture
    cfg_dict = aligned.cfg.to_dict()
    cfg_dict["architecture"] = base
    cfg_dict["metadata"] = {**copy.deepcopy(cfg_dict["metadata"]), METADATA_KEY: _concept_table(aligned)}
    if base == "topk":
        cfg_dict["k"] = aligned.cfg.k + aligned.cfg.n_concepts
        cfg_dict["rescale_acts_by_decoder_norm"] = False
    state = {name: t.detach().clone() for name, t in aligned.state_dict().items()}
    if base == "jumprelu":
        state["threshold"][aligned.cfg.n_free :] = 0.0  # JumpReLU at 0 is the slots' ReLU
    sae_cls, cfg_cls = get_sae_class(base)
    return _build(sae_cls, cfg_cls.from_dict(cfg_dict), state)


def export_plain(aligned: AlignedSAE, path: str | Path) -> Path:
    """Write `plain_sae(aligned)` as a SAELens folder (cfg.json + sae_weights.safetensors)."""
    path = Path(path)
    plain_sae(aligned).save_model(path)
    return path


def aligned_from_plain(sae: SAE) -> AlignedSAE:
    """Rebuild the AlignedSAE from a plain export, using the concept table in its metadata."""
    table = sae.cfg.metadata.get(METADATA_KEY)
    if table is None:
        raise ValueError(
            f"this {sae.cfg.architecture()} SAE has no cfg.metadata.{METADATA_KEY} concept table; "
            "to align an ordinary SAE use align_lens.sae.aligned_from_sae(sae, concept_names)"
        )
    if table["base_architecture"] != sae.cfg.architecture():
        raise ValueError(
            f"concept table says base {table['base_architecture']!r} but the SAE is {sae.cfg.architecture()!r}"
        )
    cfg_dict = sae.cfg.to_dict()
    cfg_dict["metadata"] = {k: v for k, v in cfg_dict["metadata"].items() if k != METADATA_KEY}
    cfg_dict.update(
        architecture=AlignedSAEConfig.architecture(),
        **{key: table[key] for key in ("base_architecture", "concept_names", "concept_slots", "concept_scales")},
        k=table["k"],
        align_config=table.get("align_config") or {},
        metrics=table.get("metrics") or {},
    )
    state = {name: t.detach().clone() for name, t in sae.state_dict().items()}
    return _build(AlignedSAE, AlignedSAEConfig.from_dict(cfg_dict), state)
