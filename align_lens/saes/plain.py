"""The plain SAELens form of an AlignedSAE: an ordinary standard / jumprelu / topk SAE that loads without align_lens.

standard, jumprelu   the same weights; exact (a concept slot's ReLU is a ReLU, or a JumpReLU at threshold 0).
topk                 plain TopK ranks every latent, so slots are made to win the ranking: each slot's encoder
                     column and bias are multiplied by `slot_gain` (a power of two, so the round trip is exact)
                     and its decoder row divided by it, and each slot gets a helper latent with the negated
                     encoder and a zero decoder row. Exactly one of a slot and its helper is hugely positive, so
                     k + n_concepts keeps them plus the same k free latents as the aligned SAE. The result
                     differs only where a slot's pre-activation times the gain is below the k-th free one
                     (|pre| ≈ 0); `export_plain(..., activations=)` measures that and records it.
In the topk form slot values are `slot_gain` times the aligned values (`concept_scales` in the table are in
those plain units); the table's `slot_value_scale` says so.
"""

from __future__ import annotations

import copy
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
from jaxtyping import Float
from sae_lens import SAE, SAEConfig
from sae_lens.registry import get_sae_class
from torch import Tensor

from align_lens.files import replaced_folder
from align_lens.saes.aligned import AlignedSAE, AlignedSAEConfig

METADATA_KEY = "align_lens"
SLOT_GAIN = 2.0**20  # measured on the demo-like SAE: 2^10, 2^14, 2^20 leave 192, 40, 1 of 32,741 tokens differing


def _default_gain(aligned: AlignedSAE) -> float:
    return 2.0**8 if aligned.dtype == torch.float16 else SLOT_GAIN  # float16 overflows above 65504


def _concept_table(aligned: AlignedSAE, gain: float) -> dict[str, Any]:
    cfg = aligned.cfg
    topk = cfg.base_architecture == "topk"
    return {
        "concept_names": list(cfg.concept_names),
        "concept_slots": list(cfg.concept_slots),
        "concept_scales": [s * gain for s in cfg.concept_scales],
        "concept_counts": list(cfg.concept_counts),
        "ontology_hash": cfg.ontology_hash,
        "base_architecture": cfg.base_architecture,
        "version": version("align_lens"),
        "exact": not topk,
        "k": cfg.k,
        "slot_value_scale": gain,
        "helper_latents": list(range(cfg.d_sae, cfg.d_sae + cfg.n_concepts)) if topk else [],
        "note": (
            f"slot values are {gain:g} x the aligned values; latents {cfg.d_sae}..{cfg.d_sae + cfg.n_concepts - 1} "
            "are helpers with zero decoder rows that keep plain TopK's choice of free latents the aligned one; "
            "see 'fidelity' for the measured difference"
            if topk
            else None
        ),
        "fidelity": None,
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


def plain_sae(aligned: AlignedSAE, slot_gain: float | None = None) -> SAE:
    """The same dictionary as an ordinary SAELens SAE of the base architecture (a copy; see the module notes)."""
    if not isinstance(aligned, AlignedSAE):
        raise TypeError(f"expected an AlignedSAE, got {type(aligned).__name__}")
    base, nf, nc = aligned.cfg.base_architecture, aligned.cfg.n_free, aligned.cfg.n_concepts
    slot_gain = _default_gain(aligned) if slot_gain is None else slot_gain
    gain = float(slot_gain) if base == "topk" else 1.0
    if not gain > 0 or torch.tensor(gain).log2() % 1 != 0:
        raise ValueError(f"slot_gain must be a positive power of two (exact to undo), got {slot_gain!r}")
    cfg_dict = aligned.cfg.to_dict()
    cfg_dict["architecture"] = base
    cfg_dict["metadata"] = {**copy.deepcopy(cfg_dict["metadata"]), METADATA_KEY: _concept_table(aligned, gain)}
    state = {name: t.detach().clone() for name, t in aligned.state_dict().items()}
    if base == "topk":
        cfg_dict.update(k=(aligned.cfg.k or 0) + nc, d_sae=aligned.cfg.d_sae + nc, rescale_acts_by_decoder_norm=False)
        w, b = state["W_enc"][:, nf:] * gain, state["b_enc"][nf:] * gain
        state["W_enc"] = torch.cat([state["W_enc"][:, :nf], w, -w], dim=1)
        state["b_enc"] = torch.cat([state["b_enc"][:nf], b, -b])
        dec = state["W_dec"]
        state["W_dec"] = torch.cat([dec[:nf], dec[nf:] / gain, torch.zeros_like(dec[nf:])])
    if base == "jumprelu":
        state["threshold"][nf:] = 0.0  # JumpReLU at 0 is the slots' ReLU
    sae_cls, cfg_cls = get_sae_class(base)
    return _build(sae_cls, cfg_cls.from_dict(cfg_dict), state)


@torch.no_grad()
def plain_fidelity(aligned: AlignedSAE, plain: SAE, activations: Float[Tensor, "n d_in"]) -> dict[str, Any]:
    """How far the plain form is from the aligned SAE on `activations`: reconstruction and slot differences."""
    table = plain.cfg.metadata[METADATA_KEY]
    dev, dtype = aligned.W_dec.device, aligned.dtype
    rec_diff, slot_diff, rows, argmax_same, n = 0.0, 0.0, 0, 0, 0
    for x in activations.split(4096):
        x = x.to(dev, dtype)
        z = aligned.encode(x)
        zp = plain.encode(x)
        slots = zp[:, table["concept_slots"]] / table["slot_value_scale"]
        d_rec = (plain.decode(zp) - aligned.decode(z)).abs().amax(-1)
        d_slot = (slots - z[:, aligned.cfg.n_free :]).abs().amax(-1)
        rec_diff, slot_diff = max(rec_diff, float(d_rec.max())), max(slot_diff, float(d_slot.max()))
        scale = x.abs().amax(-1).clamp_min(1e-12)
        rows += int(((d_rec / scale) > 1e-4).sum())
        argmax_same += int((slots.argmax(-1) == z[:, aligned.cfg.n_free :].argmax(-1)).sum())
        n += len(x)
    return {
        "n_rows": n,
        "max_abs_reconstruction_diff": rec_diff,
        "max_abs_slot_diff": slot_diff,
        "rows_differing": rows,  # reconstruction off by more than 1e-4 of the row's largest entry
        "slot_argmax_agreement": argmax_same / max(1, n),
    }


def export_plain(
    aligned: AlignedSAE,
    path: str | Path,
    activations: Float[Tensor, "n d_in"] | None = None,
    slot_gain: float | None = None,
) -> Path:
    """Write `plain_sae(aligned)` as a SAELens folder (cfg.json + sae_weights.safetensors), replacing `path`.

    For a topk base, give real `activations` to measure the remaining difference (recorded in the table's
    `fidelity`); a difference, or no measurement, is warned about.
    """
    path = Path(path)
    plain = plain_sae(aligned, slot_gain)
    if aligned.cfg.base_architecture == "topk":
        if activations is None:
            warnings.warn(
                "the plain TopK export is exact except where a slot's pre-activation is ≈0; pass activations= "
                "to export_plain to measure and record the difference.",
                stacklevel=2,
            )
        else:
            fidelity = plain_fidelity(aligned, plain, activations)
            plain.cfg.metadata[METADATA_KEY]["fidelity"] = fidelity
            if fidelity["rows_differing"]:
                warnings.warn(
                    f"the plain TopK export differs from the aligned SAE on {fidelity['rows_differing']} of "
                    f"{fidelity['n_rows']} activations (max reconstruction difference "
                    f"{fidelity['max_abs_reconstruction_diff']:.3g}); recorded in its metadata.",
                    stacklevel=2,
                )
    with replaced_folder(path, owned=("cfg.json", "sae_weights.safetensors", "sparsity.safetensors")) as tmp:
        plain.save_model(tmp)
    return path


def aligned_from_plain(sae: SAE) -> AlignedSAE:
    """Rebuild the AlignedSAE from a plain export, using the concept table in its metadata."""
    table = sae.cfg.metadata.get(METADATA_KEY)
    if table is None:
        raise ValueError(
            f"this {sae.cfg.architecture()} SAE has no cfg.metadata.{METADATA_KEY} concept table; "
            "to align an ordinary SAE use align_lens.saes.aligned_from_sae(sae, concept_names)"
        )
    if table["base_architecture"] != sae.cfg.architecture():
        raise ValueError(
            f"concept table says base {table['base_architecture']!r} but the SAE is {sae.cfg.architecture()!r}"
        )
    cfg_dict = sae.cfg.to_dict()
    cfg_dict["metadata"] = {k: v for k, v in cfg_dict["metadata"].items() if k != METADATA_KEY}
    gain, helpers = table.get("slot_value_scale", 1.0), table.get("helper_latents") or []
    state = {name: t.detach().clone() for name, t in sae.state_dict().items()}
    if helpers:
        nf, keep = table["concept_slots"][0], sae.cfg.d_sae - len(helpers)
        state["W_enc"] = state["W_enc"][:, :keep].clone()
        state["b_enc"] = state["b_enc"][:keep].clone()
        state["W_dec"] = state["W_dec"][:keep].clone()
        state["W_enc"][:, nf:] /= gain
        state["b_enc"][nf:] /= gain
        state["W_dec"][nf:] *= gain
        cfg_dict["d_sae"] = keep
    cfg_dict.update(
        architecture=AlignedSAEConfig.architecture(),
        **{key: table[key] for key in ("base_architecture", "concept_names", "concept_slots")},
        concept_scales=[s / gain for s in table["concept_scales"]],
        concept_counts=table.get("concept_counts") or [],
        ontology_hash=table.get("ontology_hash"),
        k=table["k"],
        align_config=table.get("align_config") or {},
        metrics=table.get("metrics") or {},
    )
    out = _build(AlignedSAE, AlignedSAEConfig.from_dict(cfg_dict), state)
    assert isinstance(out, AlignedSAE)
    return out
