"""Step-wise AlignSAE on an explicit-format two-hop model: binding per step, bridge-entity binding, swaps at each hop.

Binding (held-out top-1) is reported per step, per held-out phrasing and for the bridge entity, beside its floors
(`two_hop_controls`): the same aligned slots fitted on an UNTRAINED model of the same architecture
(`untrained_like`, the initialisation of `model_seed`) and Stage 2 on shuffled training labels; and beside the
unsupervised baseline, the Stage-1 SAE's best latent per concept (chosen on training activations).

Swaps run through the evaluation stage's `choose_swap` (exact scoring of the whole greedy continuation up to <eos>):

  step 2 (official)  prompt "Q: ... A: e2", concept r2 at the bridge token; r2 → r' must give f(e2, r')
  step 1 (new)       prompt "Q: ... A:", concept r1 at the answer position; r1 → r' must give the whole
                     counterfactual chain "e2' e3'" with e2' = f(e1, r'), e3' = f(e2', r2); split into the first
                     hop (e2' right) and the rest (e3' right given e2' right) by `chain_split`

For step 1 the base example's `entity` is the key "e1|r2", so the (entity, concept) → answer lookup of
`evaluate_swaps` holds the counterfactual chain. For each method (aligned slots with the delta edit and with the
paper's overwrite-with-the-reconstruction edit, DiffMean = class means of the step's own training activations,
the Stage-1 SAE's best latents) α is chosen on a validation half of the held-out compositions over the sweep
`cfg.alphas` (up to 32) and reported on the other half (`choose_swap`); the validation curve is kept per α.
"""

from __future__ import annotations

import os
import random
import resource
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.analysis.baselines import diffmean_directions, linear_probe, stage1_editor
from align_lens.evals.selection import Candidate, choose_swap
from align_lens.interventions.editors import ALPHAS, DirectionEditor, Editor, slot_editor
from align_lens.ontology import Example
from align_lens.training.config import AlignConfig, Runtime, Stage1Config
from align_lens.training.stage1 import pretrain_sae
from align_lens.worlds.two_hop import TwoHopWorld, select_step
from align_lens.worlds.two_hop_controls import Site, accuracy_by_phrasing, chain_split, groups, readings
from align_lens.worlds.two_hop_model import untrained_like

SWEEP: tuple[float, ...] = (*ALPHAS, 4.0, 8.0, 16.0, 32.0)  # the default grid and a large-α tail


@dataclass
class StudyConfig:
    """Settings of `run_two_hop_study`; the defaults produced the numbers in docs/results.md ("Two-hop")."""

    hook_name: str = "blocks.0.hook_resid_mid"  # relation slots and swaps (measured best for swaps)
    entity_hook_name: str = "blocks.3.hook_resid_post"  # bridge-entity slots (the bridge is computed late)
    n_train: int = 3000  # training compositions for the ontologies
    n_heldout: int = 2000  # held-out compositions (half validation, half test for swaps)
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(d_sae=512, k=16, steps=1000, batch_size=512))
    align_epochs: int = 10
    alphas: tuple[float, ...] = SWEEP  # every swap method's α grid (in its editor's unit)
    swap_items: int = 10  # base prompts per source relation, per half
    seed: int = 0
    model_seed: int = 0  # the model's training seed: the untrained floor is its initialisation
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


def swap_at_step(model, editor: Editor, world: TwoHopWorld, step: str, cfg: StudyConfig) -> dict[str, Any]:
    """Exact swap success at one step, α chosen on validation prompts over `cfg.alphas` and reported on test
    prompts at that α only (`choose_swap`); step 1 adds `chain_split` of the test trials."""
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
        upper_bound=False,
    )
    res = r["test"]
    out = {
        "alpha": r["alpha"],
        "validation_exact": r["val_exact"],
        "validation_by_alpha": dict(zip(r["val_by_candidate"][step]["alphas"], r["val_by_candidate"][step]["exact"])),
        "test_exact": r["test_exact"],
        "test_ci": r["test_ci"],
        "test_first_token": res["success"]["first_token"][0],
        "test_kept_source": r["kept_source"],
        "clean_accuracy": res["clean_accuracy"],
        "pair_exact": res["pair"]["exact"][0],
        "n_trials": r["test_trials"],
        "examples": res["examples"][:3],
    }
    return out | ({"chain": chain_split(res)} if step == "step1" else {})


def run_two_hop_study(model, world: TwoHopWorld, cfg: StudyConfig | None = None) -> dict[str, Any]:
    """Stage 1 on every token of training questions (one SAE per hook), Stage 2 for the step-wise relation
    ontology and the bridge-entity ontology; held-out binding per step, per held-out phrasing and of the bridge
    beside its floors (untrained model, shuffled labels) and the Stage-1 SAE's best latents; swaps at both hops
    for four methods; the model's accuracy per phrasing; wall and CPU time of the run."""
    cfg = cfg or StudyConfig()
    t0, cpu0, load0 = time.perf_counter(), _cpu_s(), os.getloadavg()[0]
    rel = world.relation_ontology("explicit", (1, 2), cfg.n_train, cfg.n_heldout, cfg.seed)
    rel_hf = world.relation_ontology("explicit", (1, 2), cfg.n_train, cfg.n_heldout, cfg.seed, "heldout")
    ent = world.entity_ontology("explicit", cfg.n_train, cfg.n_heldout, cfg.seed)
    texts = [f"{e.prompt} {e.answer}" for e in select_step(rel, "step1").select("train")]
    rel_scored = [(rel, [groups(rel, "step")]), (rel_hf, [groups(rel_hf, "step_frames"), groups(rel_hf, "frame")])]
    sites = {
        "relation": Site(rel, cfg.hook_name, rel_scored),
        "entity": Site(ent, cfg.entity_hook_name, [(ent, [groups(ent, "bridge_entity")])]),
    }
    runtime = Runtime(device=cfg.device, seed=cfg.seed, progress=cfg.progress)
    align_cfg = AlignConfig(epochs=cfg.align_epochs, runtime=runtime)

    def read(m, readers: tuple[str, ...]) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
        """Every site's binding on model `m` (one Stage-1 SAE per hook), merged per reader."""
        binding: dict[str, dict[str, float]] = {r: {} for r in readers}
        fits: dict[str, Any] = {}
        for name, site in sites.items():
            tokens = gather_token_activations(m, texts, site.hook)
            sae = pretrain_sae(tokens, replace(cfg.stage1, hook_name=site.hook, runtime=runtime))
            b, fits[name] = readings(m, sae, site, align_cfg, readers, cfg.seed)
            fits[name]["sae"] = sae
            for r in readers:
                binding[r] |= b[r]
        return binding, fits

    binding, fits = read(model, ("aligned", "shuffled_labels", "sae_latent"))
    binding["untrained"] = read(untrained_like(model, cfg.model_seed), ("aligned",))[0]["aligned"]
    out: dict[str, Any] = {"config": asdict(cfg), "world": world.summary(), "binding_heldout": binding}
    out["accuracy_by_phrasing"] = accuracy_by_phrasing(model, rel) | accuracy_by_phrasing(model, rel_hf)
    rf = fits["relation"]
    aligned, train_acts = rf["aligned"], rf["train_acts"]
    held = gather_activations(model, rel.prompts("heldout"), cfg.hook_name, "last", 256)
    probe = linear_probe(train_acts, rel.labels("train"), held, rel.labels("heldout"), rel.names, seed=cfg.seed)
    out["relation_probe_heldout"] = probe["heldout_accuracy"]  # upper bound for a linear read-out, both steps
    out["relation_binding_train"] = aligned.cfg.metrics["binding_accuracy_train"]
    out["entity_concepts"] = ent.n_concepts

    swaps = {}
    for step in ("step2", "step1"):
        m = torch.tensor([(e.template or "").startswith(step) for e in rel.select("train")])
        dm = diffmean_directions(train_acts[m], rel.labels("train")[m], rel.n_concepts)
        editors: dict[str, Editor] = {
            "aligned_delta": slot_editor(aligned, "delta"),
            "aligned_paper": slot_editor(aligned, "paper"),
            "diffmean": DirectionEditor(dm["means"], rel.names, cfg.hook_name),
            "sae_latent": stage1_editor(rf["sae"], rf["sae_latent"], cfg.hook_name),
        }
        swaps[step] = {k: swap_at_step(model, ed, world, step, cfg) for k, ed in editors.items()}
    out["swaps"] = swaps
    out["time"] = {
        "wall_s": round(time.perf_counter() - t0, 1),
        "cpu_s": round(_cpu_s() - cpu0, 1),
        "load_1min_start": load0,
        "load_1min_end": os.getloadavg()[0],
        "torch_threads": torch.get_num_threads(),
    }
    out["aligned"] = aligned
    return out


def _cpu_s() -> float:
    """User + system CPU seconds of this process (all its threads) so far."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def summary_rows(res: dict[str, Any]) -> list[dict[str, Any]]:
    """One flat row per headline number of `run_two_hop_study` (for printing and the report): each binding with
    its floors and the Stage-1 latent beside it, each swap with its α and (step 1) its split at the bridge."""
    b = res["binding_heldout"]
    rows = []
    for key, v in b["aligned"].items():
        what = f"bridge-entity binding ({res['entity_concepts']} concepts)" if key == "bridge_entity" else key
        rows.append(
            {
                "metric": f"binding, held-out, {what}",
                "value": v,
                "floor_untrained": b["untrained"][key],
                "floor_shuffled_labels": b["shuffled_labels"][key],
                "stage1_latent": b["sae_latent"][key],
            }
        )
    rows.append({"metric": "model exact accuracy by phrasing (step-1 chain)", **res["accuracy_by_phrasing"]})
    for step, by_method in res["swaps"].items():
        for method, r in by_method.items():
            row = {"metric": f"{step} swap exact, test, {method}", "value": r["test_exact"], "alpha": r["alpha"]}
            row |= r.get("chain", {})
            row["validation_by_alpha"] = {a: round(v, 3) for a, v in r["validation_by_alpha"].items()}
            rows.append(row)
    rows.append({"metric": "study time", **res["time"]})
    return rows
