"""Data-parallel Stage 2: two gloo processes on 127.0.0.1 give the single-process result, write checkpoints
from rank 0 only, and resume."""

import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sae_lens import StandardSAE, StandardSAEConfig

from align_lens import AlignConfig, LossWeights, Ontology, OptimiserConfig, Runtime, align
from align_lens.activations.store import ActivationStore, write_tensor_store
from align_lens.training import distributed, losses, objective
from align_lens.training.config import with_values
from align_lens.training.stage2 import Stage2Trainer

D_IN, NAMES = 16, ["a", "b", "c", "d"]


def _problem():
    g = torch.Generator().manual_seed(1)
    y = torch.arange(len(NAMES)).repeat_interleave(17)  # 68 rows: the last batch of an epoch is short
    acts = torch.randn(len(NAMES), D_IN, generator=g)[y] * 3 + torch.randn(len(y), D_IN, generator=g)
    unlabelled = torch.randn(200, D_IN, generator=g)
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept=NAMES[int(c)]) for i, c in enumerate(y)], NAMES)
    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=40))
    sae.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    return sae, onto, acts, unlabelled


def _config(**kw):
    base = AlignConfig(
        epochs=4,
        batch_size=25,
        unlabelled_batch_size=15,
        patience=None,
        weights=LossWeights(decorrelation=0.5),
        optimiser=OptimiserConfig(lr=3e-3, warmup_steps=2),
        runtime=Runtime(progress=False),
    )
    return with_values(base, kw)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank, port, tmp, config_kw, crash_at_step):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        sae, onto, acts, unlabelled = _problem()
        if rank == 0 and not (tmp / "lab").exists():  # rank 0 writes the stores both read
            write_tensor_store(tmp / "lab", acts, onto.labels("train"), NAMES, rows_per_shard=30)
            write_tensor_store(tmp / "unl", unlabelled, rows_per_shard=64)
        dist.barrier()
        saves, real_save = [], Stage2Trainer.save_checkpoint
        Stage2Trainer.save_checkpoint = lambda *a: saves.append(rank) or real_save(*a)
        if crash_at_step is not None:
            real_terms, calls = objective.stage2_terms, []

            def crash(*a, **k):
                calls.append(1)
                if len(calls) > crash_at_step:
                    raise KeyboardInterrupt
                return real_terms(*a, **k)

            objective.stage2_terms = crash
        try:
            aligned = align(
                sae,
                onto,
                activations=ActivationStore(tmp / "lab"),
                unlabelled=ActivationStore(tmp / "unl"),
                config=_config(**config_kw),
                parallel=distributed.DataParallel(),
            )
        except KeyboardInterrupt:
            aligned = None
        (tmp / f"saves{rank}.txt").write_text(str(len(saves)))
        if rank == 0 and aligned is not None:
            torch.save({"state": aligned.state_dict(), "history": aligned.history.steps}, tmp / "result.pt")
    finally:
        dist.destroy_process_group()


def _run_two(tmp, config_kw=None, crash_at_step=None):
    args = (_free_port(), tmp, config_kw or {}, crash_at_step)
    mp.start_processes(_worker, args=args, nprocs=2, start_method="fork", join=True)


def _single():
    sae, onto, acts, unlabelled = _problem()
    return align(sae, onto, activations=acts, unlabelled=unlabelled, config=_config())


def test_two_processes_match_one(tmp_path):
    single = _single()
    _run_two(tmp_path)
    result = torch.load(tmp_path / "result.pt")
    for name, p in single.state_dict().items():
        torch.testing.assert_close(result["state"][name], p, rtol=1e-4, atol=1e-5, msg=name)
    for term in ("total", "binding", "decorrelation", "reconstruction", "silence"):
        got = [s[term] for s in result["history"]]
        torch.testing.assert_close(torch.tensor(got), torch.tensor(single.history.series(term)), rtol=1e-4, atol=1e-6)
    assert single.history.steps[-1]["total"] < 0.7 * single.history.steps[0]["total"]  # it trained


def test_checkpoints_come_from_rank_0_and_resume(tmp_path):
    ckpt = {"checkpoint_dir": str(tmp_path / "ckpt")}
    _run_two(tmp_path, ckpt, crash_at_step=7)  # 3 steps per epoch: dies in epoch 3 after 2 checkpoints
    assert (tmp_path / "saves0.txt").read_text() == "2" and (tmp_path / "saves1.txt").read_text() == "0"
    assert not (tmp_path / "result.pt").exists()
    _run_two(tmp_path, ckpt)
    resumed = torch.load(tmp_path / "result.pt")
    single = _single()
    for name, p in single.state_dict().items():
        torch.testing.assert_close(resumed["state"][name], p, rtol=1e-4, atol=1e-5, msg=name)


def test_global_decorrelation_equals_the_single_batch_value(tmp_path):
    """Gradients of the all-reduced term over two halves equal those of the one-batch term."""
    zc, zf = torch.rand(10, 3), torch.randn(10, 7).relu()
    ref_f = zf.clone().requires_grad_(True)
    losses.decorrelation_loss(zc, ref_f).backward()
    torch.save((zc, zf, ref_f.grad), tmp_path / "case.pt")
    mp.start_processes(_decor_worker, args=(_free_port(), tmp_path), nprocs=2, start_method="fork", join=True)
    grads = torch.cat([torch.load(tmp_path / f"grad{r}.pt") for r in range(2)])
    torch.testing.assert_close(grads, ref_f.grad, rtol=1e-4, atol=1e-6)


def _decor_worker(rank, port, tmp):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        zc, zf, _ = torch.load(tmp / "case.pt")
        mine = zf.tensor_split(2)[rank].clone().requires_grad_(True)
        loss = distributed.global_decorrelation_loss(zc.tensor_split(2)[rank], mine)
        loss.backward()  # each process holds the full loss; its gradient reaches every process's rows
        torch.save(mine.grad / 2, tmp / f"grad{rank}.pt")  # DDP averages over the 2 processes
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_torchrun_entry_script(tmp_path):
    sae, onto, acts, unlabelled = _problem()
    sae.save_model(tmp_path / "sae")
    onto.to_json(tmp_path / "onto.json")
    write_tensor_store(tmp_path / "lab", acts, onto.labels("train"), NAMES, rows_per_shard=30)
    write_tensor_store(tmp_path / "unl", unlabelled, rows_per_shard=64)
    config = '{"epochs": 4, "batch_size": 25, "unlabelled_batch_size": 15, "weights": {"decorrelation": 0.5}, "optimiser": {"lr": 0.003, "warmup_steps": 2}, "patience": null}'
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(_free_port())]
    cmd += ["-m", "align_lens.training.distributed", "--sae", str(tmp_path / "sae"), "--ontology"]
    cmd += [str(tmp_path / "onto.json"), "--store", str(tmp_path / "lab"), "--unlabelled", str(tmp_path / "unl")]
    subprocess.run([*cmd, "--out", str(tmp_path / "out"), "--config", config], check=True, timeout=300)
    from sae_lens import SAE

    got = SAE.load_from_disk(tmp_path / "out")
    single = _single()
    for name, p in single.state_dict().items():
        torch.testing.assert_close(got.state_dict()[name], p, rtol=1e-4, atol=1e-5, msg=name)
