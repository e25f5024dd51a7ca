"""Stage-1 options chosen by benchmarks/stage1_sweep.py: the aux-k dead window and the b_dec start."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from align_lens.evals.fidelity import fidelity
from align_lens.training.config import Runtime, Stage1Config
from align_lens.training.stage1 import pretrain_sae


def _acts() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    basis = torch.randn(64, 16, generator=g)
    codes = torch.rand(4096, 64, generator=g) * (torch.rand(4096, 64, generator=g) < 0.06)
    return codes @ basis + 5.0  # a large mean, as in a residual stream


def test_short_dead_window_and_mean_b_dec_revive_latents():
    acts = _acts()
    common = Stage1Config(d_sae=128, k=4, steps=60, batch_size=256)
    old = fidelity(pretrain_sae(acts, common), acts)
    new = fidelity(pretrain_sae(acts, replace(common, dead_feature_window=5, init_b_dec="mean")), acts)
    assert new["dead_fraction"] < old["dead_fraction"]
    assert new["explained_variance"] > old["explained_variance"]


def test_unknown_b_dec_start_is_refused():
    with pytest.raises(ValueError, match="init_b_dec"):
        pretrain_sae(_acts(), Stage1Config(d_sae=32, k=4, steps=2, batch_size=256, init_b_dec="median"))  # pyright: ignore[reportArgumentType]


@pytest.mark.parametrize("progress", [True, False])
def test_progress_flag_controls_saelens_bar(progress, capsys):
    pretrain_sae(_acts(), Stage1Config(d_sae=32, k=4, steps=3, batch_size=256, runtime=Runtime(progress=progress)))
    err = capsys.readouterr().err
    assert ("Training SAE" in err) == progress


def test_threads_apply_while_training_only():
    """Runtime(threads=N) trains with N torch threads and restores the previous number after."""
    seen = []
    before = torch.get_num_threads()
    config = Stage1Config(d_sae=32, k=4, steps=3, batch_size=256, runtime=Runtime(threads=2, progress=False))
    with pytest.MonkeyPatch.context() as mp:
        real = torch.nn.Module.train
        mp.setattr(
            torch.nn.Module, "train", lambda self, mode=True: seen.append(torch.get_num_threads()) or real(self, mode)
        )
        pretrain_sae(_acts(), config)
    assert seen and set(seen) == {2} and before == 1  # conftest runs tests on one thread
    assert torch.get_num_threads() == before


def test_a_stage1_config_is_required():
    with pytest.raises(
        TypeError, match=r"expected a Stage1Config, got int; pass e.g. pretrain_sae\(acts, Stage1Config"
    ):
        pretrain_sae(_acts(), 32)  # pyright: ignore[reportArgumentType]
