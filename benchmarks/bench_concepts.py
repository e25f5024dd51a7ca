"""Stage-2 step cost against the number of concept slots, the free latents (or the whole width) fixed.

Usage: python benchmarks/bench_concepts.py [--slots 20 1000 5000 20000] [--free 16384 | --d-sae 36384]
                                           [--d-in 256] [--batch 1024] [--steps 5] [--threads 1]

Each slot count runs in a fresh subprocess: a random StandardSAE with `--free` latents (or `--d-sae` minus the
slots, so the width, and with it the encoder and decoder cost, is the same at every count), an ontology of
that many concepts with 2 labelled rows per concept (at least `--batch` × (`--steps` + 2), so every step takes a
full batch), rows drawn around one centre per concept, default `AlignConfig` (LDA slot init, decorrelation on) but
"mse_onehot" binding at every count ("auto" would switch). Times `Stage2Trainer.step` on full batches of `--batch`
labelled rows: CPU time (`time.process_time`, all threads) per step over `--steps` steps after 2 warm-up steps.
Memory: the peak resident set during the timed steps above the resident set before them (Linux VmHWM after
resetting it through /proc/self/clear_refs). Also prints the setup time (slot init included) and the mean number
of slots active per labelled row. Ratios are to the first slot count.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status (the memory figure needs Linux)")


def measure(n_slots: int, free: int, d_sae: int | None, d_in: int, batch: int, steps: int, threads: int) -> dict:
    """One slot count, in this process."""
    import torch
    from sae_lens import StandardSAE, StandardSAEConfig

    from align_lens import AlignConfig, Ontology, Runtime
    from align_lens.training.stage2 import Stage2Trainer

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    n = max(batch * (steps + 2), 2 * n_slots)  # every warm-up and timed step a full batch
    names = [f"c{i}" for i in range(n_slots)]
    labels = torch.arange(n) % n_slots
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept=names[c]) for i, c in enumerate(labels.tolist())], names)
    centres = torch.randn(n_slots, d_in, generator=gen)
    x = centres[labels] + 0.3 * torch.randn(n, d_in, generator=gen)
    torch.manual_seed(0)
    base = StandardSAE(StandardSAEConfig(d_in=d_in, d_sae=free if d_sae is None else d_sae - n_slots))
    runtime = Runtime(progress=False, threads=threads)
    config = AlignConfig(
        steps=10**6, batch_size=batch, binding="mse_onehot", runtime=runtime
    )  # one loss at every count
    start = time.perf_counter()
    trainer = Stage2Trainer(base, onto, activations=x, labels=labels, config=config)
    setup = time.perf_counter() - start
    order = torch.randperm(n, generator=gen)
    batches = [order[i * batch : (i + 1) * batch] for i in range(steps + 2)]
    with torch.no_grad():
        active = float((trainer.aligned.concept_acts(x[batches[0]]) > 0).sum(-1).float().mean())
    for idx in batches[:2]:
        trainer.step(idx)
    Path("/proc/self/clear_refs").write_text("5")
    rss = _status_kib("VmRSS")
    cpu = time.process_time()
    for idx in batches[2:]:
        trainer.step(idx)
    cpu = (time.process_time() - cpu) / steps
    peak = _status_kib("VmHWM") - rss
    return {"slots": n_slots, "s_per_step": cpu, "peak_mib": peak / 1024, "setup_s": setup, "active": active}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--slots", type=int, nargs="+", default=[20, 1000, 5000, 20000])
    p.add_argument("--free", type=int, default=16384)
    p.add_argument("--d-sae", type=int, help="fix free latents + slots instead of the free latents")
    p.add_argument("--d-in", type=int, default=256)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the subprocess: measure this slot count
    a = p.parse_args()
    if a.one is not None:
        print(json.dumps(measure(a.one, a.free, a.d_sae, a.d_in, a.batch, a.steps, a.threads)))
        return
    width = f"d_sae {a.d_sae} (free latents + slots)" if a.d_sae else f"free latents {a.free}"
    print(f"{width}, d_in {a.d_in}, batch {a.batch}, {a.steps} timed steps, {a.threads} thread(s)")
    print(f"{'slots':>6} {'s/step':>8} {'ratio':>6} {'peak MiB':>9} {'ratio':>6} {'setup s':>8} {'active/row':>10}")
    first = None
    for n in a.slots:
        args = [sys.executable, __file__, "--one", str(n), "--free", str(a.free), "--d-in", str(a.d_in)]
        args += ["--batch", str(a.batch), "--steps", str(a.steps), "--threads", str(a.threads)]
        args += ["--d-sae", str(a.d_sae)] if a.d_sae else []
        r = json.loads(subprocess.run(args, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        first = first or r
        print(
            f"{n:>6} {r['s_per_step']:>8.3f} {r['s_per_step'] / first['s_per_step']:>6.2f} {r['peak_mib']:>9.0f} "
            f"{r['peak_mib'] / max(first['peak_mib'], 1e-9):>6.2f} {r['setup_s']:>8.1f} {r['active']:>10.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
