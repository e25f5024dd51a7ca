"""Step-wise AlignSAE on an explicit-format two-hop model: binding per step, bridge-entity binding, swaps at each hop.

Swaps run through the evaluation stage's `choose_swap` (exact scoring of the whole greedy continuation up to <eos>):

  step 2 (official)  prompt "Q: ... A: e2", concept r2 at the bridge token; r2 → r' must give f(e2, r')
  step 1 (new)       prompt "Q: ... A:", concept r1 at the answer position; r1 → r' must give the whole
                     counterfactual chain "e2' e3'" with e2' = f(e1, r'), e3' = f(e2', r2)

For step 1 the base example's `entity` is the key "e1|r2", so the (entity, concept) → answer lookup of
`evaluate_swaps` holds the counterfactual chain. α is chosen on a validation half of the held-out compositions
and reported on the other half (`choose_swap`), for the aligned slots and for DiffMean (class means of the step's own training
activations, `DirectionEditor`).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.analysis.baselines import diffmean_directions, linear_probe
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.evals.selection import Candidate, choose_swap
from align_lens.interventions.editors import ALPHAS, DirectionEditor, SlotEditor
from align_lens.ontology import Example, Ontology
from align_lens.training.config import AlignConfig, Runtime, Stage1Config
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.two_hop import TwoHopWorld, select_step


@dataclass
class StudyConfig:
    """Settings of `run_two_hop_study`; the defaults produced the numbers in docs/results.md ("Two-hop")."""

    hook_name: str = "blocks.0.hook_resid_mid"  # relation slots and swaps (measured best for swaps)
    entity_hook_name: str = "blocks.3.hook_resid_post"  # bridge-entity slots (the bridge is computed late)
    n_train: int = 3000  # training compositions for the ontologies
    n_heldout: int = 2000  # held-out compositions (half validation, half test for swaps)
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(d_sae=512, k=16, steps=1000, batch_size=512))
    align_epochs: int = 10
    alphas: tuple[float, ...] = ALPHAS  # for the aligned slots and DiffMean
    swap_items: int = 10  # base prompts per source relation, per half
    seed: int = 0
    device: str = "cpu"
    progress: bool = False


def swap_examples(world: TwoHopWorld, step: str, cfg: StudyConfig) -> tuple[list[Example], dict]:
    """Held-out base prompts of one step ("step1" / "step2", as in `relation_ontology`) and the
    (entity key, relation) → counterfactual answer lookup."""
    items, lookup = [], {}
    for c, frame, split in world.labelled(cfg.n_train, cfg.n_heldout, cfg.seed):
        if split != "heldout":
            continue
        q = world.question(c, frame)
        if step == "step2":
            items.append(Example(f"{q} {c.e2}", c.r2, c.e3, c.e2, split, f"step2/{frame}"))
        else:
            key = f"{c.e1}|{c.r2}"
            items.append(Example(q, c.r1, world.answer(c), key, split, f"step1/{frame}"))
            lookup |= {(key, r): world.answer(world.compose(c.e1, r, c.r2)) for r in world.relations}
    return items, (dict(world.facts) if step == "step2" else lookup)


def _halves(items: list[Example], seed: int) -> tuple[list[Example], list[Example]]:
    order = list(range(len(items)))
    random.Random(f"halves/{seed}").shuffle(order)
    half = len(order) // 2
    return [items[i] for i in order[:half]], [items[i] for i in order[half:]]


def swap_at_step(model, editor, world: TwoHopWorld, step: str, cfg: StudyConfig) -> dict[str, Any]:
    """Exact swap success at one step, α chosen on validation prompts and reported on test prompts (`choose_swap`)."""
    items, lookup = swap_examples(world, step, cfg)
    val, test = _halves(items, cfg.seed)
    r = choose_swap(
        model,
        [Candidate(step, editor, cfg.alphas)],
        val,
        test,
        lookup,
        val_items=cfg.swap_items,
        test_items=cfg.swap_items,
        seed=cfg.seed,
        max_new_tokens=4 if step == "step1" else 3,
    )
    res = r["test"]
    i = res["alphas"].index(r["alpha"])
    return {
        "alpha": r["alpha"],
        "validation_exact": r["val_exact"],
        "validation_by_alpha": dict(zip(r["val_by_candidate"][step]["alphas"], r["val_by_candidate"][step]["exact"])),
        "test_exact": r["test_exact"],
        "test_ci": r["test_ci"],
        "test_first_token": res["success"]["first_token"][i],
        "test_kept_source": r["kept_source"],
        "clean_accuracy": res["clean_accuracy"],
        "pair_exact": res["pair"]["exact"][i],
        "n_trials": r["test_trials"],
        "examples": res["examples"][:3],
    }


def run_two_hop_study(model, world: TwoHopWorld, cfg: StudyConfig | None = None) -> dict[str, Any]:
    """Stage 1 on every token of training questions (one SAE per hook), Stage 2 for the step-wise relation
    ontology and the bridge-entity ontology, held-out binding per step, and swaps at both hops beside DiffMean."""
    cfg = cfg or StudyConfig()
    rel = world.relation_ontology("explicit", (1, 2), cfg.n_train, cfg.n_heldout, cfg.seed)
    ent = world.entity_ontology("explicit", cfg.n_train, cfg.n_heldout, cfg.seed)
    texts = [f"{e.prompt} {e.answer}" for e in select_step(rel, "step1").select("train")]

    runtime = Runtime(device=cfg.device, seed=cfg.seed, progress=cfg.progress)

    def stage1(hook: str):
        tokens = gather_token_activations(model, texts, hook)
        return pretrain_sae(tokens, replace(cfg.stage1, hook_name=hook, runtime=runtime))

    align_cfg = AlignConfig(epochs=cfg.align_epochs, runtime=runtime)
    out: dict[str, Any] = {"config": asdict(cfg), "world": world.summary()}

    def acts(onto: Ontology, split: str, hook: str = cfg.hook_name) -> torch.Tensor:
        return gather_activations(model, onto.prompts(split), hook, "last", 256)

    rel_acts = {s: acts(rel, s) for s in ("train", "heldout")}
    aligned = align(stage1(cfg.hook_name), rel, activations=rel_acts["train"], config=align_cfg)
    rel_hf = world.relation_ontology("explicit", (1, 2), cfg.n_train, cfg.n_heldout, cfg.seed, "heldout")
    binding = {}
    for suffix, onto, held_acts in (
        ("", rel, rel_acts["heldout"]),
        ("_heldout_frames", rel_hf, acts(rel_hf, "heldout")),
    ):
        z = encode_in_chunks(aligned, held_acts, concepts_only=True)
        for step in ("step1", "step2"):
            m = torch.tensor([(e.template or "").startswith(step) for e in onto.select("heldout")])
            binding[step + suffix] = binding_metrics(z[m], onto.labels("heldout")[m], onto.names)["accuracy"]
    out["relation_binding_heldout"] = binding
    probe = linear_probe(rel_acts["train"], rel.labels("train"), rel_acts["heldout"], rel.labels("heldout"), rel.names)
    out["relation_probe_heldout"] = probe["heldout_accuracy"]  # upper bound for a linear read-out, both steps
    out["relation_binding_train"] = aligned.cfg.metrics["binding_accuracy_train"]

    ent_acts = {s: acts(ent, s, cfg.entity_hook_name) for s in ("train", "heldout")}
    aligned_ent = align(stage1(cfg.entity_hook_name), ent, activations=ent_acts["train"], config=align_cfg)
    ze = encode_in_chunks(aligned_ent, ent_acts["heldout"], concepts_only=True)
    out["entity_binding_heldout"] = binding_metrics(ze, ent.labels("heldout"), ent.names)["accuracy"]
    out["entity_concepts"] = ent.n_concepts

    swaps = {}
    for step in ("step2", "step1"):
        m = torch.tensor([(e.template or "").startswith(step) for e in rel.select("train")])
        dm = diffmean_directions(rel_acts["train"][m], rel.labels("train")[m], rel.n_concepts)
        swaps[step] = {
            "aligned_delta": swap_at_step(model, SlotEditor(aligned, "delta"), world, step, cfg),
            "diffmean": swap_at_step(model, DirectionEditor(dm["means"], rel.names, cfg.hook_name), world, step, cfg),
        }
    out["swaps"] = swaps
    out["aligned"] = aligned
    return out


def summary_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per headline number of `run_two_hop_study` (for printing and the report)."""
    rows = [
        {"metric": f"relation binding, held-out, {k}", "value": v} for k, v in res["relation_binding_heldout"].items()
    ]
    rows.append(
        {
            "metric": f"bridge-entity binding, held-out ({res['entity_concepts']} concepts)",
            "value": res["entity_binding_heldout"],
        }
    )
    for step, by_method in res["swaps"].items():
        for method, r in by_method.items():
            rows.append(
                {
                    "metric": f"{step} swap exact, test, {method} (α={r['alpha']} chosen on validation)",
                    "value": r["test_exact"],
                }
            )
    return rows
