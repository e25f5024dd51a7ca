"""Stage-2 settings compared at one hook on the shipped model, from one cached Stage-1 SAE: held-out binding,
explained variance, per-template worst cases and delta-mode swap success by α (20 base prompts per source concept).
This is how the demo's hook and the default silence weight were chosen (docs/results.md).

Usage: python benchmarks/stage2_settings.py HOOK '{"name": {AlignConfig overrides, "no_unl": true?}, ...}'
Example: python benchmarks/stage2_settings.py blocks.0.hook_resid_post '{"sil1": {"weights.silence": 1}, "sil0.3": {}}'
(a dotted name sets a field of a nested block, as `with_values` does)
Caches activations and the Stage-1 SAE under runs/stage2_settings/.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from sae_lens import SAE

from align_lens import (
    AlignConfig,
    Runtime,
    Stage1Config,
    align,
    evals,
    gather_activations,
    gather_token_activations,
    pretrain_sae,
)
from align_lens.interventions.editors import ALPHAS
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.training.config import with_values
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import corpus_texts


def main() -> None:
    hook, configs = sys.argv[1], json.loads(sys.argv[2])
    root = Path("runs/stage2_settings")
    root.mkdir(parents=True, exist_ok=True)
    model, world = load_base_model(), load_base_world()
    onto = world.ontology()
    cache = root / f"acts_{hook}.pt"
    if cache.exists():
        acts = torch.load(cache)
    else:
        bios, questions = corpus_texts(world, None, 0)
        acts = {
            "bio": gather_token_activations(model, bios, hook),
            "q": gather_token_activations(model, questions, hook),
            "train": gather_activations(model, onto.prompts("train"), hook),
            "heldout": gather_activations(model, onto.prompts("heldout"), hook),
        }
        torch.save(acts, cache)
    tokens = torch.cat([acts["bio"], acts["q"]])
    s1_dir = root / f"stage1_{hook}"
    if s1_dir.exists():
        stage1 = SAE.load_from_disk(s1_dir)
    else:
        stage1 = pretrain_sae(tokens, Stage1Config(d_sae=1024, k=16, steps=1500, batch_size=1024, hook_name=hook))
        stage1.save_model(s1_dir)
    print(f"stage-1 explained variance {evals.fidelity(stage1, tokens)['explained_variance']:.3f}")
    for name, overrides in configs.items():
        t = time.time()
        unlabelled = None if overrides.pop("no_unl", False) else acts["bio"]
        base = AlignConfig(epochs=4, batch_size=256, hook_name=hook, runtime=Runtime(progress=False))
        cfg = with_values(base, overrides)
        aligned = align(stage1, onto, activations=acts["train"], unlabelled=unlabelled, config=cfg)
        templates = [e.template for e in onto.select("heldout")]
        held = evals.binding_metrics(
            aligned.concept_acts(acts["heldout"]), onto.labels("heldout"), onto.names, templates
        )
        worst = sorted(held["per_template"].items(), key=lambda kv: kv[1])[:3]
        swaps = evaluate_swaps(
            model, aligned, onto.select("heldout"), alphas=ALPHAS, mode="delta", max_items=20, lookup=onto
        )
        print(
            json.dumps(
                {
                    "cfg": name,
                    "binding_heldout": round(held["accuracy"], 4),
                    "explained_variance": round(evals.fidelity(aligned, tokens)["explained_variance"], 3),
                    "worst_templates": [(k, round(v, 3)) for k, v in worst],
                    "swap_exact_by_alpha": dict(zip(ALPHAS, [round(x, 3) for x in swaps.success["exact"]])),
                    "seconds": round(time.time() - t),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
