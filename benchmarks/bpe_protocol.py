"""Issue 19's numbers on the BPE biography world and its GPT-2-shaped model, through the user's path only.

Usage: python benchmarks/bpe_protocol.py --model DIR [--hooks H1,H2 | --hooks all] [--out runs/bpe_protocol]
       [--val-items 10] [--test-items 170] [--methods aligned,diffmean,...] [--span-only] [--from-start]
       [--alphas 0.5,1,1.5] [--align '{"weights.interchange": 3}'] [--das-span] [--quick]

The ontology is the world's user-style JSONL (`BpeBioWorld.write_ontology`: multi-token answers, names as entities,
prompts of many lengths) read back with `Ontology.from_jsonl`; its people are split into train / validation / test
(`people_split`). Per hook: Stage 1 on the train people's biographies and training questions (every token) plus
their questions' last tokens, Stage 2 on the train people's training-phrasing prompts; then, on the test people:
binding of aligned slots, DiffMean, a linear probe and the Stage-1 SAE's best latents (held-out phrasings, the
phrasings in no split) and on the held-out people (never asked in training); EV on the test people's tokens;
spliced exact accuracy (SAE in place of the activation at the last prompt token); swaps whose (mode, α) is chosen
on the validation people (`choose_swap`; each edit at the last prompt token or over it and every generated
token, `span`, or with --from-start over every position after BOS too) and reported on the test people with
Wilson intervals, for aligned slots (delta, paper), DiffMean, DAS (rank 8; --das-span: trained with the span
edit), the Stage-1 best latents and, as the floor, random directions of the DiffMean directions' norms.
`--align JSON` changes Stage-2 settings of the demo's defaults (`with_values` names, e.g. `{"weights.interchange":
3, "interchange_span": true}`). Every answer is decoded greedily and scored exactly (every token, then a stop).
Writes results.json (per hook) under --out and prints one markdown row per hook and method.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.adapter import load_transformer, residual_hooks
from align_lens.analysis.baselines import (
    diffmean_binding,
    diffmean_directions,
    linear_probe,
    stage1_best_latents,
    stage1_editor,
)
from align_lens.analysis.das import DASConfig, train_das
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.evals.fidelity import fidelity, task_accuracy
from align_lens.evals.selection import Candidate, choose_swap, of_people, people_split, restrict
from align_lens.interventions.editors import ALPHAS, DirectionEditor, slot_editor
from align_lens.ontology import Ontology
from align_lens.training.config import AlignConfig, Runtime, Stage1Config, with_values
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.bpe_model import load_bpe_world
from align_lens.worlds.demo import bpe_demo_config


def stride(items: list, n: int | None) -> list:
    """At most `n` items, evenly strided (order kept)."""
    if n is None or len(items) <= n:
        return items
    step = len(items) / n
    return [items[int(i * step)] for i in range(n)]


def sae_configs(
    model, hook: str, stage1_steps: int, epochs: int, seed: int, d_sae: int | None = None
) -> tuple[Stage1Config, AlignConfig]:
    """The BPE demo's Stage-1 and Stage-2 settings (`bpe_demo_config`) with `d_sae` (default 8 × d_model)
    latents at `hook`."""
    cfg, rt = bpe_demo_config(), Runtime(seed=seed, progress=False)
    s1 = replace(cfg.stage1, d_sae=d_sae or 8 * model.cfg.d_model, steps=stage1_steps, hook_name=hook, runtime=rt)
    return s1, replace(cfg.align, epochs=epochs, hook_name=hook, runtime=rt)


def binding_rows(sets, names, aligned, stage1, best, dm, probe_train) -> dict:
    """Held-out binding accuracy of every reader on every evaluation set (name → (acts, labels))."""
    acts_tr, y_tr = probe_train
    out: dict = {}
    for key, (acts, y) in sets.items():
        z = encode_in_chunks(aligned, acts, concepts_only=True)
        s1 = encode_in_chunks(stage1, acts)[:, torch.tensor(best["latents"])]
        out[key] = {
            "aligned slots": binding_metrics(z, y, names)["accuracy"],
            "aligned slots silent": binding_metrics(z, y, names)["n_silent"],
            "stage-1 best latents": float((s1.argmax(-1) == y).float().mean()),
            "DiffMean": diffmean_binding(acts, y, dm, names)["accuracy"],
            "linear probe": linear_probe(acts_tr, y_tr, acts, y, names)["heldout_accuracy"],
            "n": len(y),
        }
    return out


def run_hook(args, model, world, full, people, hook: str) -> dict:
    t0 = time.perf_counter()
    phase = {}

    def lap(name: str) -> None:
        phase[name] = round(time.perf_counter() - t0 - sum(phase.values()), 1)

    names = full.names
    train_ont = restrict(full, people["train"])
    train_ex = stride(train_ont.select("train"), args.train_prompts)
    train_ont = Ontology(full.concepts, train_ex)
    y_train = train_ont.labels("train")
    bios = {p.name: b for p, b in zip(world.people, (d.text for d in world.documents(args.seed) if d.loss_from == 0))}
    questions = [e.prompt for e in stride(train_ex, len(train_ex) // 10)]
    tokens = gather_token_activations(model, [bios[n] for n in sorted(people["train"])] + questions, hook)
    train_last = gather_activations(model, [e.prompt for e in train_ex], hook, batch_size=256)
    s1_cfg, a_cfg = sae_configs(model, hook, args.stage1_steps, args.epochs, args.seed)
    a_cfg = with_values(a_cfg, args.align)
    stage1 = pretrain_sae(torch.cat([tokens, train_last]), s1_cfg)
    aligned = align(stage1, train_ont, model=model, activations=train_last, unlabelled=tokens, config=a_cfg)
    lap("stage 2")

    # ---- reading: binding on the test people (held-out / unseen phrasings) and on the held-out people
    test_held = of_people(full, people["test"], "heldout")
    unseen = [e for e in world.ontology("unseen", args.n_people).select("heldout") if e.entity in people["test"]]
    held_people = world.ontology("people", args.n_people).select("heldout")
    sets = {}
    for key, exs in (
        ("held-out phrasings", test_held),
        ("no-split phrasings", unseen),
        ("held-out people", held_people),
    ):
        exs = stride(exs, args.binding_items)
        acts = gather_activations(model, [e.prompt for e in exs], hook, batch_size=256)
        sets[key] = (acts, torch.tensor([names.index(e.concept) for e in exs]))
    best = stage1_best_latents(stage1, train_last, y_train, names)
    dm = diffmean_directions(train_last, y_train, len(names))
    binding = binding_rows(sets, names, aligned, stage1, best, dm, (train_last, y_train))
    lap("binding")
    print(f"  {hook} binding: {json.dumps(binding)}", flush=True)

    # ---- fidelity on the test people's tokens; spliced exact accuracy at the last prompt token
    test_tokens = gather_token_activations(
        model, [bios[n] for n in sorted(people["test"])] + [e.prompt for e in stride(test_held, 600)], hook
    )
    sample = stride(test_held, args.task_items)
    fid = {
        "ev_stage1": fidelity(stage1, test_tokens)["explained_variance"],
        "ev_aligned": fidelity(aligned, test_tokens)["explained_variance"],
        "task_clean": task_accuracy(model, sample)["exact"],
        "task_spliced_stage1": task_accuracy(model, sample, stage1, use_error_term=False, positions="last")["exact"],
        "task_spliced_aligned": task_accuracy(model, sample, aligned, use_error_term=False, positions="last")["exact"],
    }
    lap("fidelity")
    print(f"  {hook} fidelity: {json.dumps(fid)} seconds: {phase}", flush=True)

    # ---- swaps: (mode, α) chosen on validation people, reported on test people
    def candidates(label: str, editor) -> list[Candidate]:
        """The edit over the last prompt token and every generated token (span); unless --span-only, the edit at
        the last prompt token alone; with --from-start, the edit over every position after BOS (the whole
        question) and every generated token."""
        out = [] if args.span_only else [Candidate(label, editor, args.alphas)]
        out.append(Candidate(f"{label}, span", editor, args.alphas, span=True))
        return (
            out + [Candidate(f"{label}, from start", editor, args.alphas, span=True, start=1)]
            if args.from_start
            else out
        )

    wanted = args.methods.split(",")
    methods = {}
    if "aligned" in wanted:
        methods["aligned slots"] = candidates("delta", slot_editor(aligned, "delta"))
        methods["aligned slots"] += [] if args.span_only else candidates("paper", slot_editor(aligned, "paper"))
    if "diffmean" in wanted:
        methods["DiffMean"] = candidates("diffmean", DirectionEditor(dm["means"], names, hook))
    if "random" in wanted:
        gen = torch.Generator().manual_seed(args.seed)
        rand = torch.randn(dm["means"].shape, generator=gen)
        rand = rand / rand.norm(dim=-1, keepdim=True) * dm["means"].norm(dim=-1, keepdim=True)
        methods["random directions (floor)"] = candidates("random", DirectionEditor(rand, names, hook))
    if "das" in wanted:
        das_cfg = DASConfig(steps=args.das_steps, span=args.das_span, seed=args.seed)
        das, _ = train_das(model, train_ex, train_last, names, hook, das_cfg)
        methods["DAS rank 8"] = candidates("das", das)
    if "stage1" in wanted:
        methods["stage-1 best latents"] = candidates("delta", stage1_editor(stage1, best, hook))
    val_held = of_people(full, people["val"], "heldout")
    swaps = {}
    for label, cands in methods.items():
        s = choose_swap(
            model,
            cands,
            val_held,
            test_held,
            full,
            val_items=args.val_items,
            test_items=args.test_items,
            upper_bound=False,
        )
        swaps[label] = {k: v for k, v in s.items() if k != "test"}
        print(
            f"  {hook} {label}: {s['mode']} α={s['alpha']} val {s['val_exact']:.3f} test {s['test_exact']:.3f} "
            f"[{s['test_ci'][0]:.3f}, {s['test_ci'][1]:.3f}] n={s['test_trials']}",
            flush=True,
        )
    lap("swaps")
    return {
        "hook": hook,
        "binding": binding,
        "fidelity": fid,
        "swaps": swaps,
        "n_train_prompts": len(train_ex),
        "seconds": phase,
        "total_s": time.perf_counter() - t0,
    }


METHODS = ("aligned", "diffmean", "random", "das", "stage1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", required=True, help="save_transformer folder of the GPT-2-shaped model (with world.json)"
    )
    ap.add_argument("--out", default="runs/bpe_protocol")
    ap.add_argument(
        "--hooks", default="blocks.1.hook_resid_mid", help="comma-separated, or 'all' (every residual hook)"
    )
    ap.add_argument("--n-people", type=int, default=600, help="train people of the world in the ontology")
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=200)
    ap.add_argument("--train-prompts", type=int, default=12000, help="Stage-2 prompts (strided from the train split)")
    ap.add_argument("--stage1-steps", type=int, default=1500)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--binding-items", type=int, default=3000)
    ap.add_argument("--task-items", type=int, default=600)
    ap.add_argument("--val-items", type=int, default=10, help="base prompts per source concept for choosing α")
    ap.add_argument("--test-items", type=int, default=170, help="base prompts per source concept on test (× 5 swaps)")
    ap.add_argument("--das-steps", type=int, default=300)
    ap.add_argument("--das-span", action="store_true", help="train DAS with the edit over the answer tokens too")
    ap.add_argument(
        "--methods",
        default=",".join(METHODS),
        help=f"swap methods, comma-separated from {', '.join(METHODS)}",
    )
    ap.add_argument("--span-only", action="store_true", help="only the span edit (no last-token-only candidates)")
    ap.add_argument(
        "--from-start",
        action="store_true",
        help="also the edit over every position after BOS and every generated token (swap candidates)",
    )
    ap.add_argument(
        "--alphas",
        type=lambda text: tuple(float(a) for a in text.split(",")),
        default=ALPHAS,
        help=f"comma-separated α grid for every swap method (default {ALPHAS})",
    )
    ap.add_argument("--align", type=json.loads, default={}, help="Stage-2 settings changed, as JSON (with_values)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    args = ap.parse_args()
    unknown = set(args.methods.split(",")) - set(METHODS)
    if unknown:
        ap.error(f"unknown --methods {sorted(unknown)}; choose from {', '.join(METHODS)}")
    if args.quick:
        args.n_people, args.n_val, args.n_test, args.train_prompts = 60, 10, 10, 1200
        args.stage1_steps, args.epochs, args.binding_items, args.task_items = 50, 1, 200, 40
        args.val_items, args.test_items, args.das_steps = 2, 4, 10
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    model, world = load_transformer(args.model), load_bpe_world(args.model)
    path = world.write_ontology(out / "ontology.jsonl", "phrasings", args.n_people)
    full = Ontology.from_jsonl(path)
    people = people_split(full, args.n_val, args.n_test, seed=args.seed)
    hooks = residual_hooks(model, mid=True) if args.hooks == "all" else args.hooks.split(",")
    results = {"args": vars(args), "hooks": {}}
    saved = json.loads((out / "results.json").read_text()) if (out / "results.json").exists() else None
    if saved and {k: v for k, v in saved["args"].items() if k != "hooks"} == {
        k: v for k, v in json.loads(json.dumps(vars(args), default=str)).items() if k != "hooks"
    }:
        results["hooks"] = {h: r for h, r in saved["hooks"].items() if h in hooks}  # resume a sweep: same settings
    for hook in hooks:
        if hook in results["hooks"]:
            continue
        results["hooks"][hook] = run_hook(args, model, world, full, people, hook)
        (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    print("\n| hook | reader | held-out phrasings | no-split phrasings | held-out people |")
    print("|---|---|---|---|---|")
    for hook, r in results["hooks"].items():
        for reader in ("aligned slots", "DiffMean", "linear probe", "stage-1 best latents"):
            cells = " | ".join(f"{r['binding'][s][reader]:.3f}" for s in r["binding"])
            print(f"| {hook} | {reader} | {cells} |")
    print("\n| hook | method | mode, α (validation) | exact swap, test people | Wilson 95 % | trials |")
    print("|---|---|---|---|---|---|")
    for hook, r in results["hooks"].items():
        for label, s in r["swaps"].items():
            print(
                f"| {hook} | {label} | {s['mode']}, {s['alpha']} | {s['test_exact']:.3f} "
                f"| [{s['test_ci'][0]:.3f}, {s['test_ci'][1]:.3f}] | {s['test_trials']} |"
            )
    print("\n| hook | EV Stage 1 | EV aligned | clean exact | spliced Stage 1 | spliced aligned | s |")
    print("|---|---|---|---|---|---|---|")
    for hook, r in results["hooks"].items():
        f = r["fidelity"]
        print(
            f"| {hook} | {f['ev_stage1']:.3f} | {f['ev_aligned']:.3f} | {f['task_clean']:.3f} "
            f"| {f['task_spliced_stage1']:.3f} | {f['task_spliced_aligned']:.3f} | {r['total_s']:.0f} |"
        )


if __name__ == "__main__":
    main()
