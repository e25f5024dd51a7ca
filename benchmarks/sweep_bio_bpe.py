"""Search the BPE model's training recipe: run several `train_bio_bpe.py` settings at once, one process each,
and print where each got (exact whole-answer accuracy per evaluation set) when it ended or at the deadline.

Usage: python benchmarks/sweep_bio_bpe.py --out runs/bpe_sweep [--device cuda] [--deadline 480] [--only a,b]

Meant for an accelerator (a dozen small models share one GPU); on 2 CPU cores run one setting with
`train_bio_bpe.py` instead. Writes <out>/<name>/ (each run's folder and log) and <out>/sweep.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from align_lens.worlds.bpe_model import EVAL_FILE, EVAL_SETS, LOG_FILE

# name → train_bio_bpe.py options (batch 16); CPU cost per step relative to 4 × 128: 6 × 128 ≈ 1.5, 8 × 128 and
# 4 × 256 ≈ 2 (2 cores). 7,000 steps of 4 × 128 is about the 60-minute CPU budget.
SETTINGS = {
    "l4d128_qa1_lr2e-3": "--layers 4 --d-model 128 --qa-per-relation 1 --lr 2e-3 --steps 7000",
    "l4d128_qa1_lr3e-3": "--layers 4 --d-model 128 --qa-per-relation 1 --lr 3e-3 --steps 7000",
    "l4d128_qa1_lr1e-3": "--layers 4 --d-model 128 --qa-per-relation 1 --lr 1e-3 --steps 7000",
    "l4d128_qa2_lr2e-3": "--layers 4 --d-model 128 --qa-per-relation 2 --lr 2e-3 --steps 7000",
    "l4d128_qa3_lr2e-3": "--layers 4 --d-model 128 --qa-per-relation 3 --lr 2e-3 --steps 7000",
    "l4d128_qa1_wd0.1": "--layers 4 --d-model 128 --qa-per-relation 1 --lr 2e-3 --weight-decay 0.1 --steps 7000",
    "l6d128_qa1_lr2e-3": "--layers 6 --d-model 128 --qa-per-relation 1 --lr 2e-3 --steps 5000",
    "l8d128_qa1_lr2e-3": "--layers 8 --d-model 128 --qa-per-relation 1 --lr 2e-3 --steps 4000",
    "l4d256_qa1_lr1e-3": "--layers 4 --d-model 256 --qa-per-relation 1 --lr 1e-3 --steps 4000",
    "l4d256_qa1_lr2e-3": "--layers 4 --d-model 256 --qa-per-relation 1 --lr 2e-3 --steps 4000",
    "l4d128_qa1_14k": "--layers 4 --d-model 128 --qa-per-relation 1 --lr 2e-3 --steps 14000",
    "l8d256_qa1_lr1e-3": "--layers 8 --d-model 256 --qa-per-relation 1 --lr 1e-3 --steps 7000",
}


def summary(folder: Path) -> dict:
    """The final table if the run finished, else its last periodic evaluation (whole-answer accuracy)."""
    row: dict = {"finished": (folder / EVAL_FILE).exists()}
    if row["finished"]:
        table = json.loads((folder / EVAL_FILE).read_text())
        row.update({s: table[s]["all"]["full"] for s in EVAL_SETS})
    log = folder / LOG_FILE
    if log.exists() and log.read_text().strip():
        rows = [json.loads(line) for line in log.read_text().splitlines()]
        row["step"], row["wall_s"] = rows[-1]["step"], rows[-1]["wall_s"]
        row["curve"] = [[r["step"], *(r[s]["all"]["full"] for s in EVAL_SETS)] for r in rows]
        if not row["finished"]:
            row.update({s: rows[-1][s]["all"]["full"] for s in EVAL_SETS})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--deadline", type=float, default=480.0, help="seconds; runs still going are stopped")
    ap.add_argument("--only", default="", help="comma-separated setting names (default: all)")
    ap.add_argument("--extra", default="", help="options appended to every setting (e.g. '--steps 20')")
    args = ap.parse_args()
    names = [n for n in SETTINGS if not args.only or n in args.only.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    script = Path(__file__).with_name("train_bio_bpe.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    procs = {}
    t0 = time.time()
    for name in names:
        cmd = [sys.executable, str(script), "--out", str(out / name), "--device", args.device, "--threads", "1"]
        log = open(out / f"{name}.log", "w")
        procs[name] = subprocess.Popen(
            cmd + SETTINGS[name].split() + args.extra.split(), stdout=log, stderr=subprocess.STDOUT, env=env
        )
    while any(p.poll() is None for p in procs.values()) and time.time() - t0 < args.deadline:
        time.sleep(5)
    for p in procs.values():
        if p.poll() is None:
            p.kill()
    rows = {
        name: {"settings": SETTINGS[name], "returncode": procs[name].poll(), **summary(out / name)} for name in names
    }
    (out / "sweep.json").write_text(json.dumps(rows, indent=1))
    print(f"{'setting':<20} {'done':>5} {'step':>6} {'wall_s':>7}  " + "  ".join(f"{s:>9}" for s in EVAL_SETS))
    for name, r in rows.items():
        accs = "  ".join(f"{r.get(s, float('nan')):>9.3f}" for s in EVAL_SETS)
        print(f"{name:<20} {str(r['finished']):>5} {r.get('step', 0):>6} {r.get('wall_s', 0):>7}  {accs}")


if __name__ == "__main__":
    main()
