"""Editors: the edit algebra (no model) and the unit each editor's α is measured in.

The `trained` fixture lives in conftest.py.
"""

from __future__ import annotations

import copy

import pytest
import torch

from align_lens import interventions as iv


def test_delta_edit_algebra(trained):
    al = trained["aligned"]
    h = trained["heldout_acts"][:8]
    names = al.cfg.concept_names
    a, b = names[0], names[3]
    z = al.encode(h).detach()
    ia, ib = al.concept_index(a), al.concept_index(b)
    alpha = 1.7
    got = iv.edit_residual(al, h, a, b, alpha, "delta")
    scale = al.cfg.concept_scales[3]
    want = h + (alpha * scale - z[:, ib, None]) * al.W_dec[ib] - z[:, ia, None] * al.W_dec[ia]
    torch.testing.assert_close(got, want.detach(), atol=1e-4, rtol=1e-4)
    steer = iv.edit_residual(al, h, a, b, 0.5, "steer")
    d = al.W_dec[ib] / al.W_dec[ib].norm()
    torch.testing.assert_close(steer, (h + 0.5 * h.norm(dim=-1, keepdim=True) * d).detach(), atol=1e-4, rtol=1e-4)


def test_unknown_mode_and_concept(trained):
    with pytest.raises(ValueError):
        iv.swap_hooks(trained["aligned"], "BIRTH_DATE", "MAJOR", 1.0, mode="nope")
    with pytest.raises(KeyError):
        iv.swap_hooks(trained["aligned"], "BIRTH_DATE", "NOPE", 1.0)
    with pytest.raises(ValueError, match="slot_editor"):
        iv.SlotEditor(trained["aligned"], "paper")  # the class is the delta edit; slot_editor picks by mode
    assert isinstance(iv.slot_editor(trained["aligned"], "paper"), iv.PaperSlotEditor)


def test_every_editor_names_its_unit(trained):
    al = trained["aligned"]
    units = {mode: iv.slot_editor(al, mode).unit for mode in iv.MODES}
    assert units == {"delta": "slot_scale", "paper": "absolute", "steer": "resid_norm"}
    dm = iv.DirectionEditor(torch.zeros(6, al.cfg.d_in), al.cfg.concept_names)
    lat = iv.LatentEditor(al, al.cfg.concept_slots, al.cfg.concept_names)
    assert (dm.unit, lat.unit) == ("class_mean_diff", "slot_scale")
    for ed in (iv.slot_editor(al, "steer"), dm):
        assert ed.unit in repr(ed) and iv.UNITS[ed.unit] in repr(ed)
    with pytest.raises(TypeError):
        iv.Editor()  # abstract: an editor must implement __call__ and name its unit


def test_each_unit_means_what_it_says(trained):
    al = copy.deepcopy(trained["aligned"])
    al.cfg.concept_scales = [2.5 * s for s in al.cfg.concept_scales]  # so that "slot_scale" ≠ "absolute" here
    h = trained["heldout_acts"][:8]
    names, nf, b = al.cfg.concept_names, al.cfg.n_free, 3
    src, tgt = torch.zeros(8, dtype=torch.long), torch.full((8,), b)
    scale = al.cfg.concept_scales[b]
    # slot_scale: α = 2 sets B's slot to 2·scale_B, the same edit as a delta editor with unit scales at 2·scale_B
    absolute = iv.LatentEditor(al, al.cfg.concept_slots, names, scales=[1.0] * len(names))
    torch.testing.assert_close(iv.slot_editor(al, "delta")(h, src, tgt, 2.0), absolute(h, src, tgt, 2.0 * scale))
    # absolute (paper): the decoded code has A's slot at 0 and B's slot at exactly α
    z = al.encode(h).detach()
    z[:, nf], z[:, nf + b] = 0.0, 2.0
    torch.testing.assert_close(iv.slot_editor(al, "paper")(h, src, tgt, 2.0), al.decode(z).detach())
    # resid_norm (steer): the edit's length is α‖h‖
    steer = iv.slot_editor(al, "steer")(h, src, tgt, 0.5)
    torch.testing.assert_close((steer - h).norm(dim=-1), 0.5 * h.norm(dim=-1), atol=1e-4, rtol=1e-4)


def test_one_delta_implementation():
    """`delta_edit` moves h only by the changed latents' decoder rows, keeping the reconstruction error."""
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=5, d_sae=7))
    h = torch.randn(3, 5)
    z = sae.encode(h).detach()
    out = iv.delta_edit(sae, h, lambda z: z + torch.eye(7)[2])
    torch.testing.assert_close(out, h + sae.W_dec[2].detach(), atol=1e-5, rtol=0)
    torch.testing.assert_close(iv.delta_edit(sae, h, lambda z: z), h)
    assert z.shape == (3, 7)
