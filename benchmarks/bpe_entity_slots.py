"""Why aligned slots read 1,000 people worse than DiffMean (issue 20): one Stage 1, several Stage-2 settings.

Usage: python benchmarks/bpe_entity_slots.py --model DIR [--read question|name] [--n-people 1000]
       [--variants "init=lda;init=diffmean;epochs=20"] [--stage1-steps 400] [--d-sae 4096] [--out DIR]

The entities family (`bio_bpe_families.entities`) as in benchmarks/bpe_families.py, one Stage-1 SAE, then Stage 2
once per variant: `AlignConfig` fields (dotted for nested blocks, `with_values`) set over bpe_families' settings,
"key=value" joined by commas, variants by semicolons (an empty variant: those settings). For
each: top-1 / top-5 binding on the held-out phrasings (argmax over the slots after their ReLU, the library's
reading) and the argmax over the slots' pre-activations (no silent rows: is the direction right and only the
threshold off?), on the training prompts too, beside DiffMean and the probe. Prints a markdown table and writes
results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from bpe_protocol import sae_configs, stride

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.adapter import load_transformer
from align_lens.analysis.baselines import diffmean_binding, diffmean_directions, linear_probe
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.ontology import Ontology
from align_lens.training.config import with_values
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.bio_bpe_families import entities
from align_lens.worlds.bpe_model import load_bpe_world


def parse(value: str):
    """A number or bool from the command line as such; anything else stays a string."""
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        return value


@torch.no_grad()
def slot_pre(aligned, acts: torch.Tensor) -> torch.Tensor:
    """The concept slots' pre-activations [n, c]."""
    nf = aligned.cfg.n_free
    return torch.cat([aligned.encode_with_hidden_pre(a)[1][:, nf:] for a in acts.split(2048)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True)
    ap.add_argument("--read", default="question", choices=("question", "name"))
    ap.add_argument("--n-people", type=int, default=1000)
    ap.add_argument("--variants", default="init=lda;init=diffmean;epochs=20")
    ap.add_argument("--hook", default="blocks.1.hook_resid_mid")
    ap.add_argument("--d-sae", type=int, default=4096)
    ap.add_argument("--stage1-steps", type=int, default=400)
    ap.add_argument("--bios", type=int, default=600)
    ap.add_argument("--out", default="runs/bpe_entity_slots")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    variants = [dict(kv.split("=") for kv in v.split(",") if kv) for v in args.variants.split(";")]
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model, world = load_transformer(args.model), load_bpe_world(args.model)
    onto = entities(world, n_people=args.n_people, read=args.read, seed=args.seed)
    names = onto.names
    train, held = onto.select("train"), onto.select("heldout")
    y_train, y_held = onto.labels("train"), onto.labels("heldout")
    acts_train = gather_activations(model, [e.prompt for e in train], args.hook, batch_size=256)
    acts_held = gather_activations(model, [e.prompt for e in held], args.hook, batch_size=256)
    bios = [d.text for d in world.documents(args.seed) if d.loss_from == 0]
    tokens = gather_token_activations(model, stride(bios[: len(bios) // 2], args.bios), args.hook)
    s1, a_cfg = sae_configs(model, args.hook, args.stage1_steps, 4, args.seed, args.d_sae)
    stage1 = pretrain_sae(torch.cat([tokens, acts_train]), s1)
    print(f"stage 1: {time.perf_counter() - t0:.0f} s", flush=True)
    dm = diffmean_directions(acts_train, y_train, len(names))
    rows = {
        "DiffMean": {"held": diffmean_binding(acts_held, y_held, dm, names)},
        "linear probe": {"held": linear_probe(acts_train, y_train, acts_held, y_held, names)["binding_heldout"]},
    }
    for variant in variants:
        t = time.perf_counter()
        cfg = with_values(a_cfg, {k: parse(v) for k, v in variant.items()})
        label = ", ".join(f"{k}={v}" for k, v in variant.items()) or "bpe_families' settings"
        aligned = align(stage1, Ontology(onto.concepts, train), activations=acts_train, unlabelled=tokens, config=cfg)
        readings = {
            "slots": [encode_in_chunks(aligned, a, concepts_only=True) for a in (acts_held, acts_train)],
            "pre-activations": [slot_pre(aligned, a) for a in (acts_held, acts_train)],
        }
        for key, (z_held, z_train) in readings.items():
            rows[f"aligned ({label}), {key}"] = {
                "held": binding_metrics(z_held, y_held, names),
                "train": binding_metrics(z_train, y_train, names),
                "stage2_s": time.perf_counter() - t,
            }
        print(f"  {label} done ({time.perf_counter() - t:.0f} s)", flush=True)
    keep = ("accuracy", "top5_accuracy", "n_silent")
    out = {
        r: {s: ({k: m[k] for k in keep} if isinstance(m, dict) else m) for s, m in v.items()} for r, v in rows.items()
    }
    (Path(args.out) / "results.json").write_text(json.dumps({"args": vars(args), "rows": out}, indent=1))
    print(f"\n{args.n_people} people read at the {args.read}; Stage 1 {args.d_sae} latents, {args.stage1_steps} steps")
    print("| reader | top-1 held-out phr. | top-5 | silent | top-1 train |")
    print("|---|---|---|---|---|")
    for r, v in out.items():
        h, tr = v["held"], v.get("train", {})
        train_acc = f"{tr['accuracy']:.3f}" if tr else "—"
        print(f"| {r} | {h['accuracy']:.3f} | {h['top5_accuracy']:.3f} | {h['n_silent']} | {train_acc} |")


if __name__ == "__main__":
    main()
