"""Issue 12's numbers from one command: the demo's pipeline with people split into train / validation / test.

Usage: python benchmarks/swap_protocol.py [--out runs/swap_protocol] [--interchange W] [--quick]

Stage 1 (the demo's settings, on the train people's biographies and questions), Stage 2 (the demo's AlignConfig,
train people's training-template prompts), then on the *test* people only:
  binding on held-out templates and on new phrasings that are in no split (silent prompts count as misses),
  slot fire rate on the test people's biography tokens, explained variance (Stage 1 and aligned) on the test
  people's tokens, dead fraction on the Stage-1 corpus, spliced task accuracy (no error term, last token),
  swaps for aligned slots (delta / paper modes), DiffMean, DAS (one shared rank-8 subspace, and rank 4 per
  relation) and the Stage-1 SAE's best latents, each with its
  (mode, α) from the default grid `ALPHAS` chosen on the *validation* people (`evals.selection.choose_swap`, the
  evaluation stage's one choice on validation); the best α on the test trials is
  printed beside it as an upper bound; each method's chosen (mode, α) is also applied to the test people's
  questions in the new phrasings. `--interchange W` also trains Stage 2 with the interchange term at weight
  W and reports it as a second aligned row. Writes results.json under --out and prints markdown tables.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import asdict, replace
from pathlib import Path

import torch
from sae_lens import SAE

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.analysis.baselines import diffmean_directions, stage1_best_latents, stage1_editor
from align_lens.analysis.das import DASConfig, train_das
from align_lens.evals.binding import binding_metrics, encode_in_chunks, off_ontology_silence
from align_lens.evals.fidelity import fidelity, task_accuracy
from align_lens.evals.selection import Candidate, choose_swap, of_people, people_split, restrict
from align_lens.interventions.editors import ALPHAS, DirectionEditor, slot_editor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.training.config import with_values
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DemoConfig

# Question phrasings in no split of the world (every word is in its vocabulary); the first two read like
# biography sentences, the frames issue 12 found silent.
NEW_FRAMES = (
    "The {c} of {name} is",
    "{name} 's {c} is",
    "What was the {c} of {name} ?",
    "Tell me {name} 's {c} .",
    "Do you know what {name} 's {c} is ?",
    "Give me the {c} of {name} .",
)


def new_phrasings() -> dict[str, list[str]]:
    from align_lens.worlds.bio import CUES, RELATIONS

    return {r: [f.replace("{c}", CUES[r][i % 2]) for i, f in enumerate(NEW_FRAMES)] for r in RELATIONS}


def fmt_ci(ci) -> str:
    return f"[{ci[0]:.3f}, {ci[1]:.3f}]"


def fidelity_binding(model, world, full, group: set[str], bio_of: dict, hook: str, stage1, corpus, variants) -> dict:
    """Binding (held-out templates, new phrasings), bio fire rate, EV and spliced accuracy on the people `group`."""
    names = full.names
    test_held = of_people(full, group, "heldout")
    test_labels = torch.tensor([names.index(e.concept) for e in test_held])
    test_acts = gather_activations(model, [e.prompt for e in test_held], hook)
    para = [e for e in world.ontology_from_phrasings(new_phrasings()).select("heldout") if e.entity in group]
    para_acts = gather_activations(model, [e.prompt for e in para], hook)
    para_labels = torch.tensor([names.index(e.concept) for e in para])
    test_bio_acts = gather_token_activations(model, [bio_of[p] for p in sorted(group)], hook, progress=False)
    test_q = [e.prompt for e in of_people(full, group, "train")][::8]
    test_tokens = torch.cat([test_bio_acts, gather_token_activations(model, test_q, hook, progress=False)])
    sample = test_held[:: max(1, len(test_held) // 300)]
    para_sample = para[:: max(1, len(para) // 300)]
    rows = {
        "clean model": {
            "task_clean": task_accuracy(model, sample)["exact"],
            "task_clean_new_phrasings": task_accuracy(model, para_sample)["exact"],
        },
        "stage 1": {
            "ev_tokens": fidelity(stage1, test_tokens)["explained_variance"],
            "dead_corpus": fidelity(stage1, corpus)["dead_fraction"],
            "task_spliced": task_accuracy(model, sample, stage1, use_error_term=False, positions="last")["exact"],
        },
    }
    for label, sae in variants.items():
        z = encode_in_chunks(sae, para_acts, concepts_only=True)
        b = binding_metrics(encode_in_chunks(sae, test_acts, concepts_only=True), test_labels, names)
        bp = binding_metrics(z, para_labels, names)
        per_frame: dict[str, list[bool]] = {}
        for e, p, s, y in zip(para, z.argmax(-1), (z == 0).all(-1), para_labels):
            per_frame.setdefault(e.template.split("/")[1], []).append(bool(p == y and not s))
        rows[label] = {
            "binding_heldout": b["accuracy"],
            "silent_heldout": b["n_silent"],
            "binding_new_phrasings": bp["accuracy"],
            "silent_new_phrasings": bp["n_silent"],
            "n_new_phrasings": bp["n"],
            "binding_by_new_frame": {k: sum(v) / len(v) for k, v in per_frame.items()},
            "bio_fire_rate": off_ontology_silence(sae, test_bio_acts)["mean_fire_rate"],
            "ev_tokens": fidelity(sae, test_tokens)["explained_variance"],
            "task_spliced": task_accuracy(model, sample, sae, use_error_term=False, positions="last")["exact"],
        }
    return rows


def tune(args, cfg, model, world, full, people, train_ont, bio_of, hook, stage1, corpus, train_last, bio_acts, tokens):
    """Stage-2 settings compared on the validation people only. The extra key "unlabelled": "tokens" mixes every
    token of the Stage-1 corpus (biographies and questions) into Stage 2, "bios" the biographies alone (default:
    DemoConfig.stage2_unlabelled)."""
    val_held = of_people(full, people["val"], "heldout")
    print(
        "| Stage-2 overrides | binding val | new phrasings (silent) | bio fire rate | EV val tokens (Stage 1) "
        "| spliced val (clean) | best swap val, delta (α) | s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for text in args.tune:
        t = time.perf_counter()
        over = json.loads(text)
        extra = {"tokens": tokens, "bios": bio_acts}[over.pop("unlabelled", cfg.stage2_unlabelled)]
        ac = with_values(replace(cfg.align, hook_name=hook, runtime=cfg.runtime()), over)
        aligned = align(stage1, train_ont, model=model, activations=train_last, unlabelled=extra, config=ac)
        secs = time.perf_counter() - t
        r = fidelity_binding(model, world, full, people["val"], bio_of, hook, stage1, corpus, {"a": aligned})
        sw = evaluate_swaps(model, aligned, val_held, ALPHAS, max_items=args.val_items, lookup=full)
        a, best = sw.best("exact")
        ra, r1, rc = r["a"], r["stage 1"], r["clean model"]
        print(
            f"| {text} | {ra['binding_heldout']:.4f} | {ra['binding_new_phrasings']:.4f} ({ra['silent_new_phrasings']}) "
            f"| {ra['bio_fire_rate']:.3f} | {ra['ev_tokens']:.3f} ({r1['ev_tokens']:.3f}) "
            f"| {ra['task_spliced']:.3f} ({rc['task_clean']:.3f}) | {best:.3f} ({a}) | {secs:.0f} |",
            flush=True,
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/swap_protocol")
    ap.add_argument("--n-val", type=int, default=100)
    ap.add_argument("--n-test", type=int, default=100)
    ap.add_argument("--val-items", type=int, default=40, help="base prompts per source concept for choosing α")
    ap.add_argument("--interchange", type=float, default=0.0)
    ap.add_argument("--das-steps", type=int, default=300)
    ap.add_argument("--quick", action="store_true", help="small sizes, to check the script runs")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--stage1-cache", help="save / load the Stage-1 SAE here (folder; one per hook)")
    ap.add_argument("--hook", help="hook of the SAEs and edits (default: the demo's, DemoConfig.hook_name)")
    ap.add_argument(
        "--tune",
        nargs="*",
        help='JSON AlignConfig overrides (dotted names for nested blocks, e.g. {"weights.silence": 1}) to compare on the VALIDATION people (binding, EV, spliced accuracy, swaps '
        "on --val-items prompts per concept); prints a table and stops",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = DemoConfig(progress=False)
    if args.hook:
        cfg = replace(cfg, hook_name=args.hook)
    if args.quick:
        cfg = with_values(cfg, {"stage1.steps": 100, "align.epochs": 1})
        args.das_steps, args.val_items = 20, 5
    t0 = time.perf_counter()
    out: dict = {"args": vars(args), "demo_config": asdict(cfg)}
    model, world = load_base_model(None), load_base_world(None)
    hook = cfg.hook_name
    full = world.ontology()
    people = people_split(full, args.n_val, args.n_test, seed=0)
    if args.quick:
        people["test"] = set(sorted(people["test"])[:10])
    train_ont = restrict(full, people["train"])
    names = full.names
    entity_names = {p.id: p.name for p in world.people}

    # ---- Stage 1 corpus: the train people's biographies and one training-template question per relation
    bios = [d.text for d in world.documents(cfg.seed) if d.loss_from == 0]
    bio_of = {p.id: b for p, b in zip(world.people, bios)}
    rng = random.Random(cfg.seed)
    by_key: dict[tuple, list[str]] = {}
    for e in train_ont.select("train"):
        by_key.setdefault((e.entity, e.concept), []).append(e.prompt)
    questions = [rng.choice(v) for v in by_key.values()]
    train_bios = [bio_of[p] for p in sorted(people["train"])]
    bio_acts = gather_token_activations(model, train_bios, hook, progress=False)
    tokens = torch.cat([bio_acts, gather_token_activations(model, questions, hook, progress=False)])
    train_last = gather_activations(model, train_ont.prompts("train"), hook)
    corpus = torch.cat([tokens, *[train_last] * cfg.stage1_last_tokens])
    t = time.perf_counter()
    if args.stage1_cache and Path(args.stage1_cache).exists():
        stage1 = SAE.load_from_disk(args.stage1_cache)
        cached_hook = stage1.cfg.metadata.hook_name if stage1.cfg.metadata else None
        if cached_hook != hook:
            raise SystemExit(f"--stage1-cache {args.stage1_cache} holds an SAE for {cached_hook}, not {hook}")
    else:
        stage1 = pretrain_sae(corpus, replace(cfg.stage1, hook_name=hook, runtime=cfg.runtime()))
        if args.stage1_cache:
            stage1.save_model(args.stage1_cache)
    out["stage1_s"] = time.perf_counter() - t
    if args.tune is not None:
        tune(
            args, cfg, model, world, full, people, train_ont, bio_of, hook, stage1, corpus, train_last, bio_acts, tokens
        )
        return

    # ---- Stage 2 on the train people
    t = time.perf_counter()
    align_cfg = replace(cfg.align, hook_name=hook, runtime=cfg.runtime())
    unlabelled = {"tokens": tokens, "bios": bio_acts}[cfg.stage2_unlabelled]
    aligned = align(stage1, train_ont, model=model, activations=train_last, unlabelled=unlabelled, config=align_cfg)
    out["stage2_s"] = time.perf_counter() - t
    variants = {"aligned": aligned}
    if args.interchange > 0:
        t = time.perf_counter()
        ic_cfg = with_values(align_cfg, {"weights.interchange": args.interchange})
        variants["aligned + interchange"] = align(
            stage1, train_ont, model=model, activations=train_last, unlabelled=unlabelled, config=ic_cfg
        )
        out["stage2_interchange_s"] = time.perf_counter() - t

    # ---- test people: binding, silence, fidelity, spliced accuracy
    rows = fidelity_binding(model, world, full, people["test"], bio_of, hook, stage1, corpus, variants)
    out["fidelity_binding"] = rows
    print(json.dumps(rows, indent=1), flush=True)

    # ---- swaps: (mode, α) chosen on validation people, reported on test people
    val_held = of_people(full, people["val"], "heldout")
    test_held = of_people(full, people["test"], "heldout")
    y_train = train_ont.labels("train")
    t = time.perf_counter()
    das, das_info = train_das(
        model, train_ont.select("train"), train_last, names, hook, DASConfig(steps=args.das_steps, seed=cfg.seed)
    )
    out["das_s"] = time.perf_counter() - t
    t = time.perf_counter()
    das_pc, _ = train_das(
        model,
        train_ont.select("train"),
        train_last,
        names,
        hook,
        DASConfig(rank=4, steps=args.das_steps, seed=cfg.seed, per_concept=True),
    )
    out["das_per_relation_s"] = time.perf_counter() - t
    best = stage1_best_latents(stage1, train_last, y_train, names)
    dm = diffmean_directions(train_last, y_train, len(names))
    methods = {
        label: [Candidate("delta", slot_editor(sae, "delta")), Candidate("paper", slot_editor(sae, "paper"))]
        for label, sae in variants.items()
    }
    methods["DiffMean"] = [Candidate("diffmean", DirectionEditor(dm["means"], names, hook))]
    methods["DAS"] = [Candidate(f"das rank {das.basis.shape[0]}", das)]
    methods["DAS per relation"] = [Candidate(f"das rank {das_pc.basis.shape[1]} per relation", das_pc)]
    methods["stage-1 best latents"] = [Candidate("delta", stage1_editor(stage1, best, hook))]
    swaps = {}
    for label, cands in methods.items():
        swaps[label] = choose_swap(
            model, cands, val_held, test_held, full, val_items=args.val_items, entity_names=entity_names
        )
        s = swaps[label]
        print(
            f"{label}: {s['mode']} α={s['alpha']} val {s['val_exact']:.3f} test {s['test_exact']:.3f} "
            f"{fmt_ci(s['test_ci'])} n={s['test_trials']} upper bound {s['upper_bound_exact']:.3f}",
            flush=True,
        )
    out["swaps"] = {label: {k: v for k, v in s.items() if k != "test"} for label, s in swaps.items()}
    out["swap_test_outputs"] = {label: s["test"]["outputs"] for label, s in swaps.items()}

    # ---- the chosen (mode, α) of each method on the test people's questions in the new phrasings
    para_test = [
        e for e in world.ontology_from_phrasings(new_phrasings()).select("heldout") if e.entity in people["test"]
    ]
    out["swaps_new_phrasings"] = {}
    for label, cands in methods.items():
        s = swaps[label]
        cand = next(c for c in cands if c.label == s["mode"])
        r = evaluate_swaps(model, cand.editor, para_test, (s["alpha"],), max_items=args.val_items, lookup=full, seed=2)
        out["swaps_new_phrasings"][label] = {
            "exact": r.success["exact"][0],
            "ci": list(r.ci["exact"][0]),
            "trials": r.counts["n_trials"],
            "clean_accuracy_base_prompts": r.clean_accuracy,
        }
    out["total_s"] = time.perf_counter() - t0
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / "results.json").write_text(json.dumps(out, indent=1, default=str))

    print(
        "\n| method | mode, α (chosen on validation people) | exact, test people | Wilson 95 % | trials "
        "| kept A / type B | misses: other person's B (shares a name) | upper bound: best α on test trials |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for label, s in swaps.items():
        print(
            f"| {label} | {s['mode']}, {s['alpha']} | {s['test_exact']:.3f} | {fmt_ci(s['test_ci'])} "
            f"| {s['test_trials']} | {s['kept_source']:.3f} / {s['type_target']:.3f} "
            f"| {s['misses'].get('other_person', 0):.2f} ({s['misses'].get('other_person_shares_name', 0):.2f}) "
            f"| {s['upper_bound_exact']:.3f} (α {s['upper_bound_alpha']}) |"
        )
    print(
        "\n| method | mode, α | exact swap, new phrasings (test people) | Wilson 95 % | trials | clean model on the base prompts |"
    )
    print("|---|---|---|---|---|---|")
    for label, r in out["swaps_new_phrasings"].items():
        s = swaps[label]
        print(
            f"| {label} | {s['mode']}, {s['alpha']} | {r['exact']:.3f} | {fmt_ci(r['ci'])} | {r['trials']} "
            f"| {r['clean_accuracy_base_prompts']:.3f} |"
        )
    print(f"total {out['total_s']:.0f} s")


if __name__ == "__main__":
    main()
