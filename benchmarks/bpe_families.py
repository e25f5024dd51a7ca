"""Binding and swaps per concept family on the BPE biography world (issue 20): aligned slots beside DiffMean, a
probe and floors.

Usage: python benchmarks/bpe_families.py --model DIR --family relations|entities|values|syntax|mixed
       [--n-people N] [--hook blocks.1.hook_resid_mid] [--out runs/bpe_families] [--d-sae 4096] [--binding ce|mse_onehot]
       [--swap-val 40] [--swap-test 300] [--methods aligned,diffmean,random,das] [--das-steps 150]
       [--alphas 0.5,1,2,3] [--quick]

The family's ontology (`align_lens.worlds.bio_bpe_families`) is written as user-style JSONL and read back with
`Ontology.from_jsonl`. Stage 1 (`pretrain_sae`, `--d-sae` latents) on every token of biographies plus the training
prompts' last tokens, Stage 2 (`align`) on the training prompts; then top-1 / top-5 binding on the held-out
phrasings for the aligned slots, DiffMean, a linear probe and the floor (DiffMean fitted on shuffled training
labels), EV of both SAEs on other people's biography tokens, exact answer accuracy with each SAE spliced in at the
last prompt token, and the number of concepts. The entities family runs twice: read at the question's last token
and at the name's last piece.

Swaps (entities, values, and mixed's person and value concepts): an entity swap edits A's concept to B's on a
question about A (at its last token, or for the name reading at the name's last piece inside the whole question)
and succeeds when the whole greedy answer is B's answer to that question (`entity_swap_trials`); a value swap edits value A to a value B of the same kind and succeeds when the answer is B
(`value_swap_trials`). The held-out-phrasing questions are split by the person asked: `--val-people` people give
`--swap-val` validation trials, on which `choose_swap` picks (last token or span edit, α), the rest give
`--swap-test` test trials (one random target per base prompt), reported with Wilson intervals; for aligned slots
(delta edit), DiffMean, DAS (one shared rank-8 subspace trained by interchange on a sample of `--das-pairs` swap
pairs of the training prompts, `das_view`; `--das-steps` steps) and random directions of the DiffMean norms
(floor); `--methods` picks among them. Prints markdown tables and writes results.json under --out.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import torch
from bpe_protocol import sae_configs, stride

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.adapter import load_transformer
from align_lens.analysis.baselines import diffmean_binding, diffmean_directions, linear_probe
from align_lens.analysis.das import DASConfig, train_das
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.evals.fidelity import fidelity, task_accuracy
from align_lens.evals.selection import Candidate, choose_swap
from align_lens.interventions.editors import ALPHAS, DirectionEditor, slot_editor
from align_lens.interventions.trials import SwapTrial
from align_lens.ontology import Example, Ontology
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.bio_bpe_families import (
    FAMILIES,
    das_view,
    entity_swap_trials,
    family,
    value_swap_trials,
    write_family,
)
from align_lens.worlds.bpe_model import load_bpe_world


def sizes(
    family: str, quick: bool, reads: str = "question,name", n_people: int | None = None
) -> list[tuple[str, dict]]:
    """(row label, family keywords) for each ontology the family is measured on; `n_people` caps the relations
    and entities families' people."""
    small = {
        "relations": {"n_people": 40},
        "entities": {"n_people": 40},
        "values": {},
        "syntax": {"n_train_bios": 60, "n_heldout_bios": 20},
        "mixed": {"n_relation_people": 10, "n_entities": 40, "syntax_bios": (40, 20)},
    }
    kw = small[family] if quick else {}
    if n_people is not None and family in ("relations", "entities"):
        kw = kw | {"n_people": n_people}
    if family == "entities":
        return [(f"entities ({r})", kw | {"read": r}) for r in reads.split(",")]
    return [(family, kw)]


def swap_kinds(family: str, kw: dict) -> list[tuple[str, str]]:
    """(kind, concept-name prefix) of each swap defined on the family's ontology."""
    if family == "entities":
        return [("entity", "")] if kw["read"] == "question" else [("entity at the name", "")]
    return {"values": [("value", "")], "mixed": [("entity", "person:"), ("value", "value:")]}.get(family, [])


def swap_trials(args, world, held: list[Example], names: list[str], kind: str, prefix: str) -> dict:
    """{"val": trials, "test": trials}: held-out questions (with answers) split by the person asked
    (`--val-people` seeded people to validation, the rest to test), strided to --swap-val / --swap-test base
    prompts of this kind, one random target each."""
    mine = [e for e in held if e.concept.startswith(prefix) and e.answer is not None and e.entity is not None]
    people = sorted({e.entity for e in mine if e.entity is not None})
    random.Random(args.seed).shuffle(people)
    val_people = set(people[: args.val_people])
    out = {}
    for split, n, seed in (("val", args.swap_val, args.seed), ("test", args.swap_test, args.seed + 1)):
        base = stride([e for e in mine if (e.entity in val_people) == (split == "val")], n)
        if kind.startswith("entity"):
            at_name = kind == "entity at the name"
            out[split] = entity_swap_trials(world, base, names, prefix=prefix, seed=seed, at_name=at_name)
        else:
            out[split] = value_swap_trials(base, names, prefix=prefix, seed=seed)
    return out


METHODS = ("aligned", "diffmean", "random", "das")


def swap_rows(args, model, onto, trials: dict[str, list[SwapTrial]], aligned, dm, das=None) -> dict:
    """choose_swap for the `--methods` among aligned slots (delta), DiffMean, DAS (`das`: its editor, trained by
    the caller) and random directions (floor) on the given trials."""
    names, hook = onto.names, args.hook
    gen = torch.Generator().manual_seed(args.seed)
    rand = torch.randn(dm["means"].shape, generator=gen)
    rand = rand / rand.norm(dim=-1, keepdim=True) * dm["means"].norm(dim=-1, keepdim=True)
    editors = {
        "aligned slots": ("aligned", "delta", slot_editor(aligned, "delta")),
        "DiffMean": ("diffmean", "diffmean", DirectionEditor(dm["means"], names, hook)),
        "DAS rank 8": ("das", "das", das),
        "random directions (floor)": ("random", "random", DirectionEditor(rand, names, hook)),
    }
    out = {}
    for method, (key, label, ed) in editors.items():
        if key not in args.methods or ed is None:  # DAS is not trained for the name reading
            continue
        cands = [Candidate(label, ed, args.alphas), Candidate(f"{label}, span", ed, args.alphas, span=True)]
        s = choose_swap(model, cands, trials["val"], trials["test"], onto, upper_bound=False)
        out[method] = {k: v for k, v in s.items() if k not in ("test", "misses")}
        out[method]["clean_exact"] = s["test"]["clean_accuracy"]
        print(
            f"  {method}: {s['mode']} α={s['alpha']} val {s['val_exact']:.3f} test {s['test_exact']:.3f} "
            f"[{s['test_ci'][0]:.3f}, {s['test_ci'][1]:.3f}] n={s['test_trials']}",
            flush=True,
        )
    return out


def by_prefix(metrics: dict) -> dict[str, float]:
    """Top-1 accuracy of each concept-name prefix's rows ("rel:", "person:", …; the mixed ontology's families)."""
    hits: dict[str, float] = {}
    rows: dict[str, int] = {}
    for name, m in metrics["per_concept"].items():
        if not m["n"]:
            continue
        prefix = name.split(":", 1)[0] if ":" in name else ""
        hits[prefix] = hits.get(prefix, 0.0) + m["accuracy"] * m["n"]
        rows[prefix] = rows.get(prefix, 0) + m["n"]
    return {p: hits[p] / rows[p] for p in sorted(rows) if rows[p]}


def run(args, model, world, label: str, kw: dict) -> dict:
    t0 = time.perf_counter()
    phase: dict[str, float] = {}

    def lap(name: str) -> None:
        phase[name] = round(time.perf_counter() - t0 - sum(phase.values()), 1)

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
    s1, a_cfg = sae_configs(model, args.hook, args.stage1_steps, args.epochs, args.seed, args.d_sae)
    a_cfg = replace(a_cfg, binding=args.binding or a_cfg.binding)
    stage1 = pretrain_sae(torch.cat([tokens, acts_train]), s1)
    lap("stage 1")
    aligned = align(stage1, Ontology(onto.concepts, train), activations=acts_train, unlabelled=tokens, config=a_cfg)
    lap("stage 2")
    dm = diffmean_directions(acts_train, y_train, len(names))
    shuffled = y_train[torch.randperm(len(y_train), generator=torch.Generator().manual_seed(args.seed))]
    probe = linear_probe(acts_train, y_train, acts_held, y_held, names)["binding_heldout"]
    readers = {
        "aligned slots": binding_metrics(encode_in_chunks(aligned, acts_held, concepts_only=True), y_held, names),
        "DiffMean": diffmean_binding(acts_held, y_held, dm, names),
        "linear probe": probe,
        "DiffMean, shuffled labels (floor)": diffmean_binding(
            acts_held, y_held, diffmean_directions(acts_train, shuffled, len(names)), names
        ),
    }
    other = gather_token_activations(model, stride(bios[len(bios) // 2 :], args.bios // 4), args.hook)
    fid = {"ev_stage1": fidelity(stage1, other)["explained_variance"]}
    fid["ev_aligned"] = fidelity(aligned, other)["explained_variance"]
    answered = stride([e for e in held if e.answer is not None], args.task_items)
    if answered:
        fid["task_n"] = len(answered)
        fid["task_clean"] = task_accuracy(model, answered)["exact"]
        for key, sae in (("task_spliced_stage1", stage1), ("task_spliced_aligned", aligned)):
            fid[key] = task_accuracy(model, answered, sae, use_error_term=False, positions="last")["exact"]
    lap("binding + fidelity")
    print(f"  {label}: {json.dumps(fid)} {phase}", flush=True)
    swaps = {}
    row = {e.prompt: i for i, e in enumerate(train)}  # a prompt's row of acts_train (an ontology's prompts are unique)
    for kind, prefix in swap_kinds(args.family, kw):
        asked = held
        if kind == "entity at the name":  # the name reading's prompts end at the name: edit there in whole questions
            asked = family(world, "entities", **kw | {"read": "question"}).select("heldout")
        trials = swap_trials(args, world, asked, names, kind, prefix)
        print(f"  {label} {kind} swaps: {len(trials['val'])} val / {len(trials['test'])} test trials", flush=True)
        das = None
        if "das" in args.methods and kind != "entity at the name":
            view = das_view(train, kind, prefix)
            cfg = DASConfig(steps=args.das_steps, max_pairs=args.das_pairs, seed=args.seed)
            das, info = train_das(model, view, acts_train[[row[e.prompt] for e in view]], names, args.hook, cfg)
            print(f"  DAS: {len(view)} training prompts, {info['seconds']:.0f} s", flush=True)
        swaps[kind] = swap_rows(args, model, onto, trials, aligned, dm, das)
    lap("swaps")
    return {
        "n_concepts": len(names),
        "n_train": len(train),
        "n_heldout": len(held),
        "binding": {
            r: {k: m[k] for k in ("accuracy", "top5_accuracy", "n_silent")} | {"by_family": by_prefix(m)}
            for r, m in readers.items()
        },
        **fid,
        "swaps": swaps,
        "seconds": phase,
        "total_s": time.perf_counter() - t0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, help="save_transformer folder of the GPT-2-shaped model (world.json)")
    ap.add_argument("--family", required=True, choices=FAMILIES)
    ap.add_argument("--hook", default="blocks.1.hook_resid_mid")
    ap.add_argument("--out", default="runs/bpe_families")
    ap.add_argument("--bios", type=int, default=600, help="biographies whose tokens Stage 1 and Stage 2 read")
    ap.add_argument("--d-sae", type=int, default=4096, help="Stage-1 latents (≥ 2 × the largest family's concepts)")
    ap.add_argument("--stage1-steps", type=int, default=800)
    ap.add_argument("--binding", choices=("ce", "mse_onehot"), help="Stage-2 binding loss (default: the demo's)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument(
        "--n-people", type=int, help="relations / entities: the first N train people (default: all / 1,000)"
    )
    ap.add_argument("--reads", default="question,name", help="entities: where the person is read, comma-separated")
    ap.add_argument("--task-items", type=int, default=300, help="held-out questions for spliced accuracy")
    ap.add_argument("--val-people", type=int, default=100, help="people whose questions validate the swap α")
    ap.add_argument("--swap-val", type=int, default=40, help="validation swap trials per kind")
    ap.add_argument("--swap-test", type=int, default=300, help="test swap trials per kind")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"swap methods, comma-separated from {METHODS}")
    ap.add_argument("--das-steps", type=int, default=150)
    ap.add_argument(
        "--alphas",
        type=lambda text: tuple(float(a) for a in text.split(",")),
        default=ALPHAS,
        help=f"comma-separated α grid for every swap method (default {ALPHAS})",
    )
    ap.add_argument("--das-pairs", type=int, default=20000, help="swap pairs DAS trains on (a seeded sample)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = ap.parse_args()
    if args.quick:
        args.bios, args.stage1_steps, args.epochs, args.d_sae = 60, 50, 1, 512
        args.task_items, args.val_people, args.swap_val, args.swap_test = 20, 10, 10, 20
        args.das_steps, args.das_pairs = 5, 500
    args.methods = args.methods.split(",")
    unknown = set(args.methods) - set(METHODS)
    if unknown:
        ap.error(f"unknown --methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    torch.set_num_threads(args.threads)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    model, world = load_transformer(args.model), load_bpe_world(args.model)
    results = {"args": vars(args), "rows": {}}
    for label, kw in sizes(args.family, args.quick, args.reads, args.n_people):
        results["rows"][label] = run(args, model, world, label, kw)
        (Path(args.out) / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print(f"\n{args.hook}, Stage 1: {args.d_sae} latents, {args.stage1_steps} steps")
    print("| ontology | concepts | reader | top-1 held-out phr. | top-5 | silent |")
    print("|---|---|---|---|---|---|")
    for label, r in results["rows"].items():
        for reader, b in r["binding"].items():
            print(
                f"| {label} | {r['n_concepts']} | {reader} | {b['accuracy']:.3f} | {b['top5_accuracy']:.3f} "
                f"| {b['n_silent']} |"
            )
    for label, r in results["rows"].items():
        families = sorted({f for b in r["binding"].values() for f in b["by_family"] if f})
        if families:
            print(f"\n{label}, top-1 by family (global argmax over all slots):")
            print("| reader | " + " | ".join(families) + " |")
            print("|---" * (len(families) + 1) + "|")
            for reader, b in r["binding"].items():
                print(f"| {reader} | " + " | ".join(f"{b['by_family'].get(f, 0):.3f}" for f in families) + " |")
    print("\n| ontology | EV Stage 1 | EV aligned | clean exact | spliced Stage 1 | spliced aligned | n | s |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results["rows"].items():
        task = " | ".join(
            f"{r[k]:.3f}" if k in r else "—" for k in ("task_clean", "task_spliced_stage1", "task_spliced_aligned")
        )
        print(
            f"| {label} | {r['ev_stage1']:.3f} | {r['ev_aligned']:.3f} | {task} | {r.get('task_n', 0)} "
            f"| {r['total_s']:.0f} |"
        )
    print("\n| ontology | swap | method | mode, α (validation) | val exact | test exact | Wilson 95 % | trials |")
    print("|---|---|---|---|---|---|---|---|")
    for label, r in results["rows"].items():
        for kind, rows in r["swaps"].items():
            for method, s in rows.items():
                print(
                    f"| {label} | {kind} | {method} | {s['mode']}, {s['alpha']} | {s['val_exact']:.3f} "
                    f"| {s['test_exact']:.3f} | [{s['test_ci'][0]:.3f}, {s['test_ci'][1]:.3f}] "
                    f"| {s['test_trials']} |"
                )


if __name__ == "__main__":
    main()
