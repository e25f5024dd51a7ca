import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from align_lens.training import losses


@settings(max_examples=30, deadline=None)
@given(b=st.integers(3, 40), c=st.integers(1, 5), f=st.integers(1, 30), seed=st.integers(0, 10_000))
def test_decorrelation_matches_dense_formula(b, c, f, seed):
    g = torch.Generator().manual_seed(seed)
    zc = torch.rand(b, c, generator=g, dtype=torch.float64)
    zf = torch.rand(b, f, generator=g, dtype=torch.float64).relu()
    fast = losses.decorrelation_loss(zc, zf, eps=1e-12)
    dense = losses.naive_decorrelation_loss(zc, zf, eps=1e-12)
    full = torch.corrcoef(torch.cat([zc, zf], 1).T)[:c, c:].nan_to_num()
    torch.testing.assert_close(fast, dense)
    torch.testing.assert_close(fast, full.pow(2).sum(), rtol=1e-6, atol=1e-8)


def test_decorrelation_zero_for_independent_columns():
    # columns built to be exactly uncorrelated over the batch: orthogonal centred patterns
    zc = torch.tensor([[1.0], [1.0], [0.0], [0.0]])
    zf = torch.tensor([[1.0, 5.0], [0.0, 5.0], [1.0, 5.0], [0.0, 5.0]])  # second column constant
    assert losses.decorrelation_loss(zc, zf).item() == pytest.approx(0.0, abs=1e-8)
    assert losses.decorrelation_loss(zc, torch.cat([zc, zc], 1)).item() == pytest.approx(2.0, abs=1e-4)


def test_binding_losses():
    y = torch.tensor([0, 2])
    perfect = torch.tensor([[1.0, 0, 0], [0, 0, 1.0]])
    assert losses.binding_loss(perfect, y, "mse_onehot").item() == 0.0
    assert losses.binding_loss(perfect - 1, y, "mse_onehot").item() == pytest.approx(
        2 / 6
    )  # silent true slot still counts
    assert losses.binding_loss(perfect * 20 - 10, y, "ce").item() < 1e-4
    assert losses.binding_loss(perfect - 5, y, "ce").item() > 1  # true slot silent: the "no concept" logit wins
    assert losses.binding_loss(perfect.flip(1), y, "ce") > losses.binding_loss(perfect, y, "ce")
    with pytest.raises(ValueError, match="mse_onehot"):
        losses.binding_loss(perfect, y, "hinge")


def test_reconstruction_and_silence():
    x = torch.zeros(2, 3)
    assert losses.reconstruction_loss(x, x + 1).item() == 3.0
    assert losses.silence_loss(torch.tensor([[1.0, 2.0], [0.0, 0.0]])).item() == 1.5


def test_value_heads_pick_own_concept_head():
    heads = losses.ValueHeads(n_concepts=2, d_in=3, n_answers=4)
    x = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 1, 0, 1])
    out = heads(x, labels)
    for i, c in enumerate(labels):
        torch.testing.assert_close(out[i], x[i] @ heads.weight[c] + heads.bias[c])
    assert heads.loss(x, labels, torch.full((5,), -1)).item() == 0.0  # no answers: no loss


@pytest.mark.parametrize("per_row", [1, 3])
def test_sparse_decorrelation_matches_dense_formula(per_row):
    """Many slots, few active per row: the Gram path is taken and agrees with the full correlation matrix."""
    g = torch.Generator().manual_seed(per_row)
    b, c, f = 64, 400, 24
    zc = torch.zeros(b, c, dtype=torch.float64)
    for _ in range(per_row):
        zc[torch.arange(b), torch.randint(c, (b,), generator=g)] = torch.rand(b, generator=g, dtype=torch.float64)
    assert zc.count_nonzero() <= losses.SPARSE_MAX_DENSITY * zc.numel() and c >= losses.SPARSE_MIN_SLOTS
    zf = (torch.randn(b, f, generator=g, dtype=torch.float64) - 0.5).relu().requires_grad_()
    fast = losses.decorrelation_loss(zc, zf)
    dense = losses.naive_decorrelation_loss(zc, zf)
    torch.testing.assert_close(fast, dense)
    torch.testing.assert_close(torch.autograd.grad(fast, zf)[0], torch.autograd.grad(dense, zf)[0])
    assert fast > 0


def test_mse_onehot_binding_equals_the_one_hot_formula():
    """Index labels give the same loss and gradient, bit for bit, as the dense one-hot formulation."""
    g = torch.Generator().manual_seed(0)
    pre = torch.randn(50, 9, generator=g, requires_grad=True)
    y = torch.randint(9, (50,), generator=g)
    onehot = torch.nn.functional.one_hot(y, 9).float()
    dense = torch.nn.functional.mse_loss(torch.where(onehot.bool(), pre, pre.relu()), onehot)
    fast = losses.binding_loss(pre, y, "mse_onehot")
    assert torch.equal(fast, dense)
    assert torch.equal(torch.autograd.grad(fast, pre)[0], torch.autograd.grad(dense, pre)[0])
