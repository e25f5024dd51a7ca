"""Layer sweep, ablations and baselines on the shipped base model; writes runs/studies/studies.json and
prints markdown tables for docs/results.md.

Usage: python benchmarks/studies.py [--out runs/studies] [--swap-items 10] [--skip-sweep]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

import torch

from align_lens import AlignConfig, EvalConfig, Runtime, align, gather_activations, pretrain_sae
from align_lens.analysis.baselines import compare_baselines
from align_lens.analysis.studies import ablations, layer_sweep, study_stage1
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DEFAULT_HOOK

SWEEP_COLS = (
    "hook",
    "binding_train",
    "binding_heldout",
    "stage1_binding_heldout",
    "explained_variance_aligned",
    "swap_exact_best",
    "swap_best_alpha",
    "swap_lenient_best",
)
ABLATION_COLS = (
    "variant",
    "binding_heldout",
    "explained_variance_aligned",
    "swap_exact_best",
    "swap_best_alpha",
    "swap_lenient_best",
)


def markdown(rows, cols) -> str:
    fmt = lambda v: f"{v:.3f}" if isinstance(v, float) else str(v)  # noqa: E731
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    return "\n".join(lines + ["| " + " | ".join(fmt(r.get(c, "")) for c in cols) + " |" for r in rows])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/studies")
    ap.add_argument("--swap-items", type=int, default=10, help="base prompts per source concept")
    ap.add_argument("--skip-sweep", action="store_true")
    args = ap.parse_args()
    torch.manual_seed(0)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, world = load_base_model(), load_base_world()
    onto = world.ontology()
    ev = EvalConfig(swap_items=args.swap_items, task_accuracy=False)
    stage1 = replace(study_stage1(model), steps=800, batch_size=512)
    cfg = AlignConfig(epochs=4, runtime=Runtime(progress=False))
    record = {}
    if not args.skip_sweep:
        record["layer_sweep"] = layer_sweep(model, onto, stage1=stage1, align_config=cfg, eval_config=ev)["table"]
        print("## Layer sweep\n" + markdown(record["layer_sweep"], SWEEP_COLS))
    record["ablations"] = ablations(model, onto, DEFAULT_HOOK, stage1=stage1, align_config=cfg, eval_config=ev)
    print("## Ablations\n" + markdown(record["ablations"], ABLATION_COLS))
    train = gather_activations(model, onto.prompts("train"), DEFAULT_HOOK, batch_size=256)
    held = gather_activations(model, onto.prompts("heldout"), DEFAULT_HOOK, batch_size=256)
    s1 = pretrain_sae(train, replace(stage1, hook_name=DEFAULT_HOOK))
    aligned = align(s1, onto, activations=train, config=replace(cfg, hook_name=DEFAULT_HOOK))
    record["baselines"] = compare_baselines(
        model, s1, aligned, onto, max_items=args.swap_items, train_acts=train, heldout_acts=held
    )
    print(
        "## Baselines\n"
        + json.dumps(record["baselines"].get("table", record["baselines"]), indent=1, default=str)[:4000]
    )
    (out / "studies.json").write_text(json.dumps(record, indent=1, default=str))


if __name__ == "__main__":
    main()
