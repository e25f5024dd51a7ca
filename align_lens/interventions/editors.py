"""Editors: objects that move residual vectors from concept A to concept B with a strength α.

Every editor names the unit of α in its class attribute `unit` (shown in its repr):

  "slot_scale"       α × the target's typical on-value (`cfg.concept_scales[B]`, or a latent's mean on its concept):
                     α = 1 writes what B usually reads                       (SlotEditor, LatentEditor: delta edit)
  "absolute"         α is the target slot's value itself                    (PaperSlotEditor)
  "resid_norm"       α × ‖h‖, the norm of the residual being edited         (SteerSlotEditor)
  "class_mean_diff"  α × (mean_B − mean_A): α = 1 moves A's class mean onto B's   (DirectionEditor)

The delta edit `h + decode(z') − decode(z) = h + (z' − z) W_dec` keeps the SAE's reconstruction error in the
residual; `delta_edit` is its one implementation (swaps and slot interchange both use it).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import ClassVar

import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.ontology import index_of

# The default α grid (in the editor's unit) wherever a grid is not given: evaluation, swap trials, studies,
# baselines and benchmarks all read it from here.
ALPHAS: tuple[float, ...] = (0.5, 0.75, 1.0, 1.25, 1.5, 2.0, 3.0)

UNITS = {
    "slot_scale": "α × the target concept's typical on-value",
    "absolute": "α is the target slot's value",
    "resid_norm": "α × ‖h‖ of the edited residual",
    "class_mean_diff": "α × (mean_B − mean_A) of the class means",
    "subspace_mean": "α × R Rᵀ(mean_B − h) in a learned subspace (analysis.das)",
}


def delta_edit(sae, h: Float[Tensor, "b d"], new_codes: Callable[[Tensor], Tensor]) -> Float[Tensor, "b d"]:
    """h + (z' − z) W_dec with z = sae.encode(h) and z' = new_codes(z): only the edited latents' decoder rows
    move h, so the SAE's reconstruction error stays in the residual. Runs on the SAE's device and dtype and
    returns h's."""
    x = h.to(sae.W_dec.device, sae.dtype)
    z = sae.encode(x)
    return (x + (new_codes(z) - z) @ sae.W_dec).to(h.device, h.dtype)


class Editor(ABC):
    """Moves residual vectors h [b, d] from concept src[i] to concept tgt[i] with strength α, in `unit`.

    Subclasses set `unit` (a key of `UNITS`, or a new name their docstring explains), `names` (concepts, in index order) and `hook_name` (where the edit
    applies), and implement `__call__(h, src, tgt, alpha) -> h'`.
    """

    unit: ClassVar[str]
    names: list[str]
    hook_name: str | None

    def index(self, name: str | int) -> int:
        """Index of a concept (an int passes through)."""
        return name if isinstance(name, int) else index_of(self.names, name)

    @abstractmethod
    def __call__(
        self, h: Float[Tensor, "b d"], src: Int[Tensor, " b"], tgt: Int[Tensor, " b"], alpha: float
    ) -> Float[Tensor, "b d"]: ...

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(unit={self.unit!r} ({UNITS.get(self.unit, 'see the class docstring')}), "
            f"concepts={self.names}, hook_name={self.hook_name!r})"
        )


class LatentEditor(Editor):
    """Delta edit on one chosen latent per concept of any SAE (e.g. a Stage-1 SAE's matched latents): zero A's
    latent, set B's latent to α·scale_B, keep the error term. Unit "slot_scale"."""

    unit = "slot_scale"
    mode = "delta"

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

    def _moved(self, z: Tensor, src: Tensor, tgt: Tensor, value: Tensor) -> Tensor:
        """z with A's latent zeroed and B's latent set to `value` (one per row)."""
        ar = torch.arange(len(z), device=z.device)
        lat = self.latents.to(z.device)
        out = z.clone()
        out[ar, lat[src.to(z.device)]] = 0.0
        out[ar, lat[tgt.to(z.device)]] = value.to(z.device, z.dtype)
        return out

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        value = alpha * self.scales[tgt.cpu()]
        return delta_edit(self.sae, h, lambda z: self._moved(z, src, tgt, value))


class SlotEditor(LatentEditor):
    """Delta swap on an AlignedSAE's concept slots: z'_A = 0, z'_B = α·scale_B, h ← h + decode(z') − decode(z).
    Unit "slot_scale" (`cfg.concept_scales`)."""

    def __init__(self, aligned, mode: str | None = None, hook_name: str | None = None):
        if mode not in (None, self.mode):
            raise ValueError(f"{type(self).__name__} is the {self.mode!r} edit; use slot_editor(aligned, {mode!r})")
        cfg = aligned.cfg
        super().__init__(aligned, cfg.concept_slots, cfg.concept_names, cfg.concept_scales, hook_name)


class PaperSlotEditor(SlotEditor):
    """The published swap: z'_A = 0, z'_B = α, h ← decode(z') (no error term). Unit "absolute"."""

    unit = "absolute"
    mode = "paper"

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        sae = self.sae
        z = sae.encode(h.to(sae.W_dec.device, sae.dtype))
        return sae.decode(self._moved(z, src, tgt, torch.full((len(z),), float(alpha)))).to(h.device, h.dtype)


class SteerSlotEditor(SlotEditor):
    """G-SAE-style steering along B's decoder row: h ← h + α‖h‖·W_dec,B/‖W_dec,B‖ (A is ignored).
    Unit "resid_norm"."""

    unit = "resid_norm"
    mode = "steer"

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        x = h.to(self.sae.W_dec.device, self.sae.dtype)
        d = self.sae.W_dec[self.latents.to(x.device)[tgt.to(x.device)]]
        d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-8)
        return (x + alpha * x.norm(dim=-1, keepdim=True) * d).to(h.device, h.dtype)


class DirectionEditor(Editor):
    """Steering with one vector per concept: h ← h + α·(v_B − v_A). With class means as v (DiffMean), unit
    "class_mean_diff": α = 1 moves A's mean onto B's mean."""

    unit = "class_mean_diff"
    mode = "diffmean"

    def __init__(self, vectors: Float[Tensor, "c d"], names: Sequence[str], hook_name: str | None = None):
        self.vectors = vectors.detach().float()
        self.names = list(names)
        self.hook_name = hook_name

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        v = self.vectors.to(h.device)
        return (h.float() + alpha * (v[tgt.to(h.device)] - v[src.to(h.device)])).to(h.dtype)


SLOT_EDITORS: dict[str, type[SlotEditor]] = {"paper": PaperSlotEditor, "delta": SlotEditor, "steer": SteerSlotEditor}
MODES = tuple(SLOT_EDITORS)


def slot_editor(aligned, mode: str = "delta", hook_name: str | None = None) -> SlotEditor:
    """The editor of swap `mode` ("delta", "paper" or "steer") on an AlignedSAE's slots."""
    if mode not in SLOT_EDITORS:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return SLOT_EDITORS[mode](aligned, hook_name=hook_name)


def as_editor(obj, mode: str = "delta", hook_name: str | None = None) -> Editor:
    """An AlignedSAE becomes `slot_editor(obj, mode)`; an Editor passes through (`hook_name` overrides its own)."""
    if isinstance(obj, Editor):
        if hook_name is not None:
            obj.hook_name = hook_name
        return obj
    if hasattr(obj, "cfg") and getattr(obj.cfg, "concept_names", None):
        return slot_editor(obj, mode, hook_name)
    raise TypeError(f"expected an AlignedSAE or an Editor, got {type(obj).__name__}")


def edit_residual(aligned, h: Tensor, source: str, target: str, alpha: float, mode: str = "delta") -> Tensor:
    """Apply one swap edit to residual vectors h [..., d] (no model involved); α is in the editor's unit."""
    ed = as_editor(aligned, mode)
    flat = h.reshape(-1, h.shape[-1])
    n = len(flat)
    src = torch.full((n,), ed.index(source), dtype=torch.long)
    tgt = torch.full((n,), ed.index(target), dtype=torch.long)
    return ed(flat, src, tgt, alpha).reshape(h.shape)
