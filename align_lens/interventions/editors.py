"""Editors: objects that move a residual from concept A to concept B."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from jaxtyping import Float
from torch import Tensor

MODES = ("paper", "delta", "steer")


# =============================================================================================
# editors: (h [b, d], source idx [b], target idx [b], alpha) -> h' [b, d]
# =============================================================================================


class Editor:
    """Base class: something that moves a residual from concept A to concept B with strength α."""

    names: list[str]
    hook_name: str | None

    def index(self, name: str | int) -> int:
        if isinstance(name, int):
            return name
        if name not in self.names:
            raise KeyError(f"unknown concept {name!r}; known concepts are {self.names}")
        return self.names.index(name)

    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class LatentEditor(Editor):
    """Delta-mode swap on one chosen latent per concept of any SAE (e.g. a Stage-1 SAE's matched latents):
    zero A's latent, set B's latent to α·scale_B, keep the error term."""

    def __init__(
        self,
        sae,
        latents: Sequence[int],
        names: Sequence[str],
        scales: Sequence[float] | None = None,
        hook_name: str | None = None,
    ):
        self.sae = sae
        self.names = list(names)
        self.latents = torch.tensor(list(latents))
        self.scales = torch.tensor([float(s) for s in (scales or [1.0] * len(self.names))])
        self.hook_name = hook_name or (sae.cfg.metadata.hook_name if sae.cfg.metadata else None)

    def _edited_codes(self, x: Tensor, src: Tensor, tgt: Tensor, target_value: Tensor) -> tuple[Tensor, Tensor]:
        """(z, z') with A's latent zeroed and B's latent set to `target_value`."""
        ar = torch.arange(len(x), device=x.device)
        lat = self.latents.to(x.device)
        z = self.sae.encode(x)
        z_new = z.clone()
        z_new[ar, lat[src]] = 0.0
        z_new[ar, lat[tgt]] = target_value
        return z, z_new

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        sae = self.sae
        dev = sae.W_dec.device
        x = h.to(dev, sae.dtype)
        src, tgt = src.to(dev), tgt.to(dev)
        z, z_new = self._edited_codes(x, src, tgt, alpha * self.scales.to(dev, x.dtype)[tgt])
        return (x + (z_new - z) @ sae.W_dec).to(h.device, h.dtype)  # = h + decode(z') − decode(z)


class SlotEditor(LatentEditor):
    """Swap edits in the concept-slot space of an AlignedSAE (see the module docstring for the modes)."""

    def __init__(self, aligned, mode: str = "delta", hook_name: str | None = None):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        cfg = aligned.cfg
        super().__init__(aligned, cfg.concept_slots, cfg.concept_names, cfg.concept_scales, hook_name)
        self.mode = mode

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        if self.mode == "delta":
            return super().__call__(h, src, tgt, alpha)
        sae = self.sae
        dev = sae.W_dec.device
        x = h.to(dev, sae.dtype)
        src, tgt = src.to(dev), tgt.to(dev)
        if self.mode == "steer":
            d = sae.W_dec[self.latents.to(dev)[tgt]]
            d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
            return (x + alpha * x.norm(dim=-1, keepdim=True) * d).to(h.device, h.dtype)
        _, z_new = self._edited_codes(x, src, tgt, torch.full((len(x),), alpha, device=dev, dtype=x.dtype))
        return sae.decode(z_new).to(h.device, h.dtype)  # paper: the reconstruction replaces h


class DirectionEditor(Editor):
    """Steering with one vector per concept: h ← h + α·(v_B − v_A) (DiffMean when v are class means;
    α = 1 moves A's mean onto B's mean)."""

    def __init__(self, vectors: Float[Tensor, "c d"], names: Sequence[str], hook_name: str | None = None):
        self.vectors = vectors.detach().float()
        self.names = list(names)
        self.hook_name = hook_name

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        v = self.vectors.to(h.device)
        return (h.float() + alpha * (v[tgt.to(h.device)] - v[src.to(h.device)])).to(h.dtype)


def as_editor(obj, mode: str = "delta", hook_name: str | None = None) -> Editor:
    """An AlignedSAE becomes a `SlotEditor(mode)`; an Editor passes through."""
    if isinstance(obj, Editor):
        if hook_name is not None:
            obj.hook_name = hook_name
        return obj
    if hasattr(obj, "cfg") and getattr(obj.cfg, "concept_names", None):
        return SlotEditor(obj, mode, hook_name)
    raise TypeError(f"expected an AlignedSAE or an Editor, got {type(obj).__name__}")


def edit_residual(aligned, h: Tensor, source: str, target: str, alpha: float, mode: str = "delta") -> Tensor:
    """Apply one swap edit to residual vectors h [..., d] (no model involved)."""
    ed = as_editor(aligned, mode)
    flat = h.reshape(-1, h.shape[-1])
    n = len(flat)
    src = torch.full((n,), ed.index(source), dtype=torch.long)
    tgt = torch.full((n,), ed.index(target), dtype=torch.long)
    return ed(flat, src, tgt, alpha).reshape(h.shape)
