"""Binding per concept family on the BPE biography world (issue 20): aligned slots beside DiffMean and a probe.

Usage: python benchmarks/bpe_families.py --model DIR --family relations|entities|values|syntax|mixed
       [--hook blocks.1.hook_resid_mid] [--out runs/bpe_families] [--quick]

The family's ontology (`align_lens.worlds.bio_bpe_families`) is written as user-style JSONL and read back with
`Ontology.from_jsonl`. Stage 1 (`pretrain_sae`) on every token of biographies plus the training prompts' last tokens,
Stage 2 (`align`) on the training prompts; then top-1 / top-5 binding on the held-out phrasings for the aligned slots,
DiffMean and a linear probe, EV of both SAEs on other people's biography tokens, and the number of concepts. The
entities family runs twice: read at the question's last token and at the name's last piece. Prints a markdown
table and writes results.json under --out.
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
from align_lens.evals.fidelity import fidelity
from align_lens.ontology import Ontology
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.bio_bpe_families import FAMILIES, write_family
from align_lens.worlds.bpe_model import load_bpe_world


def sizes(family: str, quick: bool) -> list[tuple[str, dict]]:
    """(row label, family keywords) for each ontology the family is measured on."""
    small = {
        "relations": {"n_people": 40},
        "entities": {"n_people": 40},
        "values": {},
        "syntax": {"n_train_bios": 60, "n_heldout_bios": 20},
        "mixed": {"n_relation_people": 10, "n_entities": 40, "syntax_bios": (40, 20)},
    }
    kw = small[family] if quick else {}
    if family == "entities":
        return [("entities (question)", kw | {"read": "question"}), ("entities (name)", kw | {"read": "name"})]
    return [(family, kw)]


def run(args, model, world, label: str, kw: dict) -> dict:
    t0 = time.perf_counter()
    if args.family == "values" and args.quick:
        kw = {"people": world.people_of("train")[:100]}
    path = write_family(world, args.family, Path(args.out) / f"{label.replace(' ', '_')}.jsonl", **kw)
    onto = Ontology.from_jsonl(path)
    names = onto.names
    train, held = onto.select("train"), onto.select("heldout")
    y_train, y_held = onto.labels("train"), onto.labels("heldout")
    acts_train = gather_activations(model, [e.prompt for e in train], args.hook, batch_size=256)
    acts_held = gather_activations(model, [e.prompt for e in held], args.hook, batch_size=256)
    bios = [d.text for d in world.documents(args.seed) if d.loss_from == 0]
    tokens = gather_token_activations(model, stride(bios[: len(bios) // 2], args.bios), args.hook)
    s1, a_cfg = sae_configs(model, args.hook, args.stage1_steps, args.epochs, args.seed)
    stage1 = pretrain_sae(torch.cat([tokens, acts_train]), s1)
    aligned = align(stage1, Ontology(onto.concepts, train), activations=acts_train, unlabelled=tokens, config=a_cfg)
    dm = diffmean_directions(acts_train, y_train, len(names))
    probe = linear_probe(acts_train, y_train, acts_held, y_held, names)["binding_heldout"]
    readers = {
        "aligned slots": binding_metrics(encode_in_chunks(aligned, acts_held, concepts_only=True), y_held, names),
        "DiffMean": diffmean_binding(acts_held, y_held, dm, names),
        "linear probe": probe,
    }
    other = gather_token_activations(model, stride(bios[len(bios) // 2 :], args.bios // 4), args.hook)
    return {
        "n_concepts": len(names),
        "n_train": len(train),
        "n_heldout": len(held),
        "binding": {r: {k: m[k] for k in ("accuracy", "top5_accuracy", "n_silent")} for r, m in readers.items()},
        "ev_stage1": fidelity(stage1, other)["explained_variance"],
        "ev_aligned": fidelity(aligned, other)["explained_variance"],
        "seconds": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="save_transformer folder of the GPT-2-shaped model (world.json)")
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--hook", default="blocks.1.hook_resid_mid")
    ap.add_argument("--out", default="runs/bpe_families")
    ap.add_argument("--bios", type=int, default=600, help="biographies whose tokens Stage 1 and Stage 2 read")
    ap.add_argument("--stage1-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.bios, args.stage1_steps, args.epochs = 60, 50, 1
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    model, world = load_transformer(args.model), load_bpe_world(args.model)
    results = {"args": vars(args), "rows": {}}
    for label, kw in sizes(args.family, args.quick):
        results["rows"][label] = run(args, model, world, label, kw)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(
        f"\n{args.hook}\n| ontology | concepts | reader | top-1 held-out phr. | top-5 | silent | EV S1 | EV aligned |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results["rows"].items():
        for reader, b in r["binding"].items():
            print(
                f"| {label} | {r['n_concepts']} | {reader} | {b['accuracy']:.3f} | {b['top5_accuracy']:.3f} "
                f"| {b['n_silent']} | {r['ev_stage1']:.3f} | {r['ev_aligned']:.3f} |"
            )


if __name__ == "__main__":
    main()
