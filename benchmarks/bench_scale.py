"""Scale benchmarks for Stage 2 (issue 13). Each measurement runs in a fresh subprocess so its peak RSS is its own.

(a) memory stays flat while Stage 2 streams an unlabelled store 10x larger than a row budget
(b) Stage-2 step time / a plain SAELens StandardTrainingSAE step of the same size (d_in 768, batch 1,024)
(c) 131,072 latents, d_in 768, batch 1,024 aligned by `align` (a few steps) within 8 GB peak RSS
(d) GPU only (runs when torch.cuda.is_available()): (b) and (c) on the card, which is named

Usage: python benchmarks/bench_scale.py [--parts a b c d] [--sizes 16384 65536 131072] [--steps 3]
CPU timings use process CPU time (min over interleaved steps), which a busy shared machine disturbs less
than wall time; wall medians are printed beside them. On the GPU, compare the wall columns (each step is
synchronised); the CPU columns there are host time only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

D_IN, BATCH, LABELLED, N_CONCEPTS = 768, 1024, 768, 6  # a step: 768 labelled + 256 unlabelled rows
BUDGET_ROWS = 16_384  # (a): the row budget; the streamed store holds 10x as many rows
PEAK_LIMIT_GB = 8.0


def _peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _problem(n_labelled: int, seed: int = 0):
    """Labelled blobs (one per concept) and their ontology."""
    import torch

    from align_lens import Ontology

    g = torch.Generator().manual_seed(seed)
    y = torch.arange(N_CONCEPTS).repeat(n_labelled // N_CONCEPTS + 1)[:n_labelled]
    acts = torch.randn(N_CONCEPTS, D_IN, generator=g)[y] * 2 + torch.randn(n_labelled, D_IN, generator=g)
    names = [f"c{i}" for i in range(N_CONCEPTS)]
    return acts, Ontology.from_records([dict(prompt=f"p{i}", concept=names[int(c)]) for i, c in enumerate(y)], names)


def _sae(d_sae: int, device: str = "cpu"):
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    torch.manual_seed(0)
    sae = StandardSAE(StandardSAEConfig(d_in=D_IN, d_sae=d_sae, device=device))
    sae.cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    return sae


# ---- children -------------------------------------------------------------------------------
def run_align(d_sae: int, unlabelled: str | None, steps: int, in_memory: bool = False, device: str = "cpu") -> dict:
    """`align` for `steps` steps, the unlabelled rows streamed from a store (or loaded, `in_memory`)."""
    import torch

    from align_lens import AlignConfig, Runtime, align
    from align_lens.activations.store import ActivationStore

    torch.set_num_threads(2)
    acts, onto = _problem(2 * LABELLED)
    extra = ActivationStore(unlabelled) if unlabelled else None
    if in_memory and extra is not None:
        extra = extra.read_all()
    runtime = Runtime(device=device, progress=False)
    config = AlignConfig(steps=steps, batch_size=LABELLED, unlabelled_batch_size=BATCH - LABELLED, runtime=runtime)
    start = time.perf_counter()
    align(_sae(d_sae, device), onto, activations=acts, unlabelled=extra, config=config)
    out = {"d_sae": d_sae, "steps": steps, "seconds": time.perf_counter() - start, "peak_rss_gb": _peak_gb()}
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def run_steps(d_sae: int, steps: int, device: str = "cpu", batch: int = BATCH) -> dict:
    """Interleaved steps of a plain SAELens StandardTrainingSAE and of Stage 2 at the same size (the step bodies
    of benchmarks/bench_loop.py)."""
    import torch
    from bench_loop import plain_step_fn, stage2_step_fn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = torch.randn(batch, D_IN, device=device)
    y = torch.randint(0, N_CONCEPTS, (batch * 3 // 4,), device=device)
    plain_step = plain_step_fn(d_sae, x, device)
    stage2_step = stage2_step_fn(d_sae, x, y, device, compiled=False)

    def timed(fn) -> tuple[float, float]:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.process_time() - cpu, time.perf_counter() - wall

    plain_step(), stage2_step()  # warm-up
    runs = {"plain": [], "stage2": []}
    for _ in range(steps):
        runs["plain"].append(timed(plain_step))
        runs["stage2"].append(timed(stage2_step))
    out = {"d_sae": d_sae, "batch": batch, "device": device, "peak_rss_gb": _peak_gb()}
    for name, ts in runs.items():
        out[f"{name}_cpu_s"] = min(t[0] for t in ts)
        out[f"{name}_wall_s"] = sorted(t[1] for t in ts)[len(ts) // 2]
    if device.startswith("cuda"):
        out["peak_cuda_gb"] = torch.cuda.max_memory_allocated() / 2**30
    return out


def spawn(kind: str, **kwargs) -> dict:
    cmd = [sys.executable, __file__, "--one", kind, json.dumps(kwargs)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{kind} {kwargs} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- parts ----------------------------------------------------------------------------------
def write_random_store(path: Path, rows: int, shard_rows: int = 16_384) -> None:
    """An unlabelled store of `rows` random rows, written shard by shard (never all in memory)."""
    import torch

    from align_lens.activations.store import write_tensor_store

    g = torch.Generator().manual_seed(0)
    chunks = (torch.randn(min(shard_rows, rows - a), D_IN, generator=g) for a in range(0, rows, shard_rows))
    write_tensor_store(path, chunks)


def part_a(tmp: Path, steps: int) -> None:
    print(f"\n(a) streaming memory: d_sae 4,096, unlabelled store vs row budget {BUDGET_ROWS:,} rows x {D_IN} fp32")
    print(f"{'unlabelled rows':>16} {'store MB':>9} {'path':>10} {'peak RSS GB':>12}")
    for rows in (BUDGET_ROWS, 10 * BUDGET_ROWS):
        path = tmp / f"store_{rows}"
        write_random_store(path, rows)
        mb = rows * D_IN * 4 / 2**20
        for in_memory in (False, True):
            r = spawn("align", d_sae=4096, unlabelled=str(path), steps=steps, in_memory=in_memory)
            print(f"{rows:>16,} {mb:>9.0f} {'in memory' if in_memory else 'streamed':>10} {r['peak_rss_gb']:>12.2f}")


def part_b(sizes: list[int], steps: int, device: str = "cpu", batch: int = BATCH) -> None:
    print(f"\n(b) step time, Stage 2 / plain SAELens StandardTrainingSAE, d_in {D_IN}, batch {batch}, {device}")
    print(
        f"{'d_sae':>8} {'plain cpu s':>11} {'stage2 cpu s':>12} {'ratio':>6} | {'plain wall':>10} {'stage2 wall':>11} {'ratio':>6}"
    )
    for d in sizes:
        r = spawn("steps", d_sae=d, steps=steps, device=device, batch=batch)
        cpu, wall = r["stage2_cpu_s"] / r["plain_cpu_s"], r["stage2_wall_s"] / r["plain_wall_s"]
        line = f"{d:>8} {r['plain_cpu_s']:>11.3f} {r['stage2_cpu_s']:>12.3f} {cpu:>6.3f} | "
        line += f"{r['plain_wall_s']:>10.4f} {r['stage2_wall_s']:>11.4f} {wall:>6.3f}"
        print(line + (f" | peak {r['peak_cuda_gb']:.1f} GB on the GPU" if "peak_cuda_gb" in r else ""))


def part_c(tmp: Path, steps: int, device: str = "cpu") -> None:
    path = tmp / "store_c"
    if not path.exists():
        write_random_store(path, BUDGET_ROWS)
    r = spawn("align", d_sae=131_072, unlabelled=str(path), steps=steps, device=device)
    gpu = f", peak GPU memory {r['peak_cuda_gb']:.2f} GB" if "peak_cuda_gb" in r else ""
    verdict = "PASS" if r["peak_rss_gb"] <= PEAK_LIMIT_GB else "FAIL"
    print(f"\n(c) align, 131,072 latents, d_in {D_IN}, batch {BATCH}, {steps} steps, {device}:")
    print(
        f"    {r['seconds']:.1f} s in all, peak RSS {r['peak_rss_gb']:.2f} GB (limit {PEAK_LIMIT_GB:.0f} GB): {verdict}{gpu}"
    )


def part_d(tmp: Path, sizes: list[int], steps: int) -> None:
    import torch

    if not torch.cuda.is_available():
        print("\n(d) GPU: skipped, torch.cuda.is_available() is False")
        return
    print(f"\n(d) GPU: {torch.cuda.get_device_name(0)}")
    part_b(sizes, max(steps, 5), "cuda", BATCH)
    part_b([262_144], max(steps, 5), "cuda", 4096)
    part_c(tmp, steps, "cuda")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", default=["a", "b", "c", "d"], choices=["a", "b", "c", "d"])
    ap.add_argument("--sizes", type=int, nargs="+", default=[16_384, 65_536, 131_072])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        fn = {"align": run_align, "steps": run_steps}[args.one[0]]
        print(json.dumps(fn(**json.loads(args.one[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for part in args.parts:
            {
                "a": lambda: part_a(tmp, args.steps),
                "b": lambda: part_b(args.sizes, args.steps),
                "c": lambda: part_c(tmp, args.steps),
                "d": lambda: part_d(tmp, args.sizes, args.steps),
            }[part]()


if __name__ == "__main__":
    main()
