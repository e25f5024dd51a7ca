import pytest
import torch
from sae_lens import (
    SAE,
    HookedSAETransformer,
    JumpReLUSAE,
    JumpReLUSAEConfig,
    StandardSAE,
    StandardSAEConfig,
    TopKSAE,
    TopKSAEConfig,
    TrainingSAE,
)
from sae_lens.registry import SAE_CLASS_REGISTRY, SAE_TRAINING_CLASS_REGISTRY
from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

from align_lens.saes import AlignedSAE, AlignedTrainingSAE, register
from align_lens.saes.aligned import ARCHITECTURE, AlignedSAEConfig, AlignedTrainingSAEConfig, aligned_from_sae

HOOK = "blocks.1.hook_resid_post"
NAMES = ["alpha", "beta", "gamma"]


def _base(arch):
    if arch == "standard":
        sae = StandardSAE(StandardSAEConfig(d_in=32, d_sae=64))
    elif arch == "topk":
        sae = TopKSAE(TopKSAEConfig(d_in=32, d_sae=64, k=4))
    else:
        sae = JumpReLUSAE(JumpReLUSAEConfig(d_in=32, d_sae=64))
        with torch.no_grad():
            sae.threshold.uniform_(0, 0.2)
    with torch.no_grad():
        sae.b_enc.normal_(0, 0.1)
        sae.b_dec.normal_(0, 0.1)
    sae.cfg.metadata.hook_name = HOOK
    sae.cfg.metadata.model_name = "tiny"
    return sae


def _aligned(arch):
    a = aligned_from_sae(_base(arch), NAMES)
    with torch.no_grad():
        a.W_enc[:, -3:].normal_()
        a.W_dec[-3:].normal_()
        a.b_enc[-3:].fill_(-0.5)
    return a


ARCHS = ["standard", "topk", "jumprelu"]


@pytest.mark.parametrize("arch", ARCHS)
def test_free_latents_reproduce_the_base_sae(arch):
    base = _base(arch)
    a = aligned_from_sae(base, NAMES)
    x = torch.randn(10, 32)
    torch.testing.assert_close(a.free_acts(x), base.encode(x))
    assert a.concept_acts(x).shape == (10, 3)
    assert a.cfg.d_sae == 67 and a.cfg.concept_slots == [64, 65, 66]
    assert a.cfg.metadata.hook_name == HOOK and a.cfg.base_architecture == arch
    torch.testing.assert_close(a(x), base(x))  # zero slots: same reconstruction


def test_topk_never_evicts_concepts():
    a = _aligned("topk")
    with torch.no_grad():
        a.b_enc[-3:] = 1000.0  # slots far larger than any free latent
    z = a.encode(torch.randn(5, 32))
    assert (z[:, :64] > 0).sum(-1).eq(4).all()  # still k free latents
    assert (z[:, 64:] > 0).all()


def test_concept_slots_are_relu():
    a = _aligned("jumprelu")
    x = torch.randn(50, 32)
    pre = (x - a.b_dec) @ a.W_enc + a.b_enc
    torch.testing.assert_close(a.concept_acts(x), pre[:, 64:].relu())


@pytest.mark.parametrize("arch", ARCHS)
def test_save_load_bit_exact_and_registered(arch, tmp_path):
    a = _aligned(arch)
    a.save_model(tmp_path)
    for loader in (SAE, AlignedSAE):
        b = loader.load_from_disk(tmp_path)
        assert type(b) is AlignedSAE
        assert b.state_dict().keys() == a.state_dict().keys()
        assert all(torch.equal(b.state_dict()[k], v) for k, v in a.state_dict().items())
        assert b.cfg.concept_names == NAMES and b.cfg.metadata.model_name == "tiny"
    assert type(TrainingSAE.load_from_disk(tmp_path)) is AlignedTrainingSAE


def test_register_is_idempotent(monkeypatch):
    monkeypatch.delitem(SAE_CLASS_REGISTRY, ARCHITECTURE)
    monkeypatch.delitem(SAE_TRAINING_CLASS_REGISTRY, ARCHITECTURE)
    register()
    first = (SAE_CLASS_REGISTRY[ARCHITECTURE], SAE_TRAINING_CLASS_REGISTRY[ARCHITECTURE])
    assert first == ((AlignedSAE, AlignedSAEConfig), (AlignedTrainingSAE, AlignedTrainingSAEConfig))
    register()  # SAELens raises on a second registration; register() must not
    assert (SAE_CLASS_REGISTRY[ARCHITECTURE], SAE_TRAINING_CLASS_REGISTRY[ARCHITECTURE]) == first


def test_concept_helpers():
    a = _aligned("standard")
    assert a.concept_index("beta") == 65
    with pytest.raises(KeyError, match="this SAE's concepts are"):
        a.concept_index("omega")
    torch.testing.assert_close(a.concept_directions(), a.W_dec[-3:])


def test_training_sae_input_is_converted():
    tr = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=32, d_sae=64, k=4))  # rescale_acts_by_decoder_norm=True
    with torch.no_grad():
        tr.W_dec.mul_(torch.rand(64, 1) + 0.5)
    a = aligned_from_sae(tr, NAMES)
    x = torch.randn(8, 32)
    torch.testing.assert_close(
        a.free_acts(x) @ a.W_dec[:64],
        tr.encode(x) @ (tr.W_dec / tr.W_dec.norm(dim=-1, keepdim=True)),
        atol=1e-5,
        rtol=1e-4,
    )


def test_bad_configs():
    with pytest.raises(ValueError, match="not supported"):
        AlignedSAEConfig(d_in=4, d_sae=8, base_architecture="gated", concept_names=["a", "b"])
    with pytest.raises(ValueError, match="needs k"):
        AlignedSAEConfig(d_in=4, d_sae=8, base_architecture="topk", concept_names=["a", "b"])
    with pytest.raises(ValueError, match="already aligned"):
        aligned_from_sae(_aligned("standard"), NAMES)


def test_attached_with_error_term_exposes_slots(tiny_model):
    model = tiny_model
    a = _aligned("standard")
    toks = model.to_tokens("Q: alpha of ann A:")
    clean = model(toks)
    model.add_sae(a, use_error_term=True)
    try:
        logits, cache = model.run_with_cache(toks, names_filter=[f"{HOOK}.hook_sae_acts_post"])
        torch.testing.assert_close(logits, clean, atol=1e-5, rtol=0)
        slots = cache[f"{HOOK}.hook_sae_acts_post"][0, :, a.concept_slots]
    finally:
        model.reset_saes()
    _, clean_cache = model.run_with_cache(toks)
    torch.testing.assert_close(slots, a.concept_acts(clean_cache[HOOK][0]), atol=1e-5, rtol=0)
    assert isinstance(model, HookedSAETransformer)
