"""An SAE goes into a model only at a hook the model has, with the model's width there."""

import pytest

from align_lens.adapter import attach_sae

HOOK = "blocks.1.hook_resid_post"


def test_attach_sae_checks_hook_and_width(tiny_model):
    from sae_lens import StandardSAE, StandardSAEConfig

    sae = StandardSAE(StandardSAEConfig(d_in=16, d_sae=8))
    with pytest.raises(ValueError, match="hook_name"):
        attach_sae(tiny_model, sae)
    sae.cfg.metadata.hook_name = "blocks.9.hook_resid_post"
    with pytest.raises(KeyError, match="not in the model"):
        attach_sae(tiny_model, sae)
    sae.cfg.metadata.hook_name = HOOK
    with pytest.raises(ValueError, match="d_in 16 does not match"):
        attach_sae(tiny_model, sae)
