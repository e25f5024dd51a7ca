"""What the grokking diagnostic measures at one checkpoint of an implicit two-hop model.

Reading (held-out top-1 binding, every reader fitted on TRAINING questions only), per series (r1 and r2 at the
answer position, the bridge entity e2 at the answer position and, compact phrasing, at the r1 token):

  aligned      Stage 1 (`pretrain_sae`, one SAE per checkpoint) + Stage 2 (`align`), argmax over the slots
  shuffled     the same Stage 2 on a seeded permutation of the training labels (the floor)
  probe        a multinomial linear probe (`linear_probe`: the linear upper bound)
  diffmean     argmax over DiffMean directions
  sae_latent   the Stage-1 SAE's best latent per concept (`stage1_best_latents`: no supervision in the SAE)

Using (the causal test): on held-out compositions e1 r1 r2 with bridge e2, edit the bridge e2 → e2' at the
series' position and count a success when the model answers f(e2', r2) (exact, then <eos>). Targets e2' are
drawn so that f(e2', r2) differs from the clean answer and is an in-distribution atomic fact. α is chosen on one
half of the compositions (validation) and reported on the other (test), for the aligned slots (delta edit),
the probe's directions (`probe_directions`), DiffMean and a random direction per concept of DiffMean's norms.
"""

from __future__ import annotations

import random
from dataclasses import replace
from typing import Any

import torch

from align_lens.activations.gather import gather_activations
from align_lens.analysis.baselines import (
    diffmean_binding,
    diffmean_directions,
    linear_probe,
    probe_directions,
    stage1_best_latents,
)
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.interventions.editors import DirectionEditor, Editor, SlotEditor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.interventions.trials import SwapTrial
from align_lens.ontology import Ontology
from align_lens.training.config import AlignConfig, Runtime
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.two_hop import TwoHopWorld

SERIES = ("relation_step1", "relation_step2", "bridge_entity", "bridge_entity_at_r1")
READERS = ("aligned", "shuffled", "probe", "diffmean", "sae_latent")
SWAP_METHODS = ("aligned", "probe", "diffmean", "random")
SPLITS = ("train", "heldout")
R1_INDEX = 3  # token index of r1 in the compact prompt "<bos> Q: e1 r1 r2 A:"
R1_OFFSET = -2  # the same token counted back from the last prompt token ("A:")


def key(series: str, reader: str) -> str:
    """Row key of one binding number: the aligned slots keep the series name, the others add the reader."""
    return series if reader == "aligned" else f"{series}.{reader}"


def swap_key(series: str, method: str) -> str:
    return f"swap.{series}.{method}"


def sites(world: TwoHopWorld, cfg: Any, seed: int) -> dict[str, tuple[Ontology, str | int]]:
    """series → (ontology, position read); `cfg` is a `grokking.GrokkingConfig`."""
    ent = world.entity_ontology("implicit", cfg.n_train, cfg.n_heldout, seed)
    out: dict[str, tuple[Ontology, str | int]] = {
        "relation_step1": (world.relation_ontology("implicit", (1,), cfg.n_train, cfg.n_heldout, seed), "last"),
        "relation_step2": (world.relation_ontology("implicit", (2,), cfg.n_train, cfg.n_heldout, seed), "last"),
        "bridge_entity": (ent, "last"),
    }
    if world.phrasing == "compact":
        out["bridge_entity_at_r1"] = (ent, R1_INDEX)
    return out


def bridge_trials(world: TwoHopWorld, names: list[str], n: int, seed: int) -> tuple[list[SwapTrial], list[SwapTrial]]:
    """(validation, test) bridge swaps on `n` held-out compositions each (see the module docstring)."""
    rng = random.Random(f"bridge-swaps/{seed}")
    comps = list(world.splits["heldout"])
    rng.shuffle(comps)
    trials = []
    for c in comps:
        if c.e2 not in names:
            continue
        targets = [
            e for e in names if e != c.e2 and (e, c.r2) not in world.ood_facts and world.facts[(e, c.r2)] != c.e3
        ]
        if targets:
            e = rng.choice(targets)
            trials.append(
                SwapTrial(world.question(c, world.frame_ids("train")[0]), c.r2, c.e2, e, c.e3, world.facts[(e, c.r2)])
            )
        if len(trials) == 2 * n:
            break
    return trials[:n], trials[n:]


def chosen_swap(
    model, editor: Editor, val: list[SwapTrial], test: list[SwapTrial], alphas: tuple[float, ...], offset: int
) -> dict[str, float]:
    """α chosen by exact success on `val`, then exact success on `test` at that α."""
    res = evaluate_swaps(model, editor, trials=val, alphas=alphas, max_new_tokens=2, offset=offset)
    exact = res.success["exact"]
    alpha = alphas[max(range(len(exact)), key=lambda i: (exact[i], -i))]
    out = evaluate_swaps(model, editor, trials=test, alphas=(alpha,), max_new_tokens=2, offset=offset)
    return {
        "exact": out.success["exact"][0],
        "alpha": float(alpha),
        "val_exact": max(exact),
        "kept": out.kept_source[0],
    }


def diagnose(model, world: TwoHopWorld, cfg: Any, seed: int) -> dict[str, float]:
    """Every reader's held-out binding per series and every method's bridge-swap success at one checkpoint."""
    site = sites(world, cfg, seed)
    acts: dict[tuple, dict[str, torch.Tensor]] = {}
    for onto, pos in site.values():
        k = (tuple(onto.prompts("train")), pos)  # the relation ontologies share their prompts
        if k not in acts:
            acts[k] = {s: gather_activations(model, onto.prompts(s), cfg.hook_name, pos, 256) for s in SPLITS}
    stage1_acts = torch.cat([a["train"] for a in acts.values()])
    runtime = Runtime(device=cfg.device, seed=seed, progress=cfg.progress)
    batch_size = min(cfg.stage1.batch_size, len(stage1_acts))
    sae = pretrain_sae(
        stage1_acts, replace(cfg.stage1, batch_size=batch_size, hook_name=cfg.hook_name, runtime=runtime)
    )
    align_cfg = AlignConfig(epochs=cfg.align_epochs, runtime=runtime)
    out: dict[str, float] = {}
    for series, (onto, pos) in site.items():
        a = acts[(tuple(onto.prompts("train")), pos)]
        y, y_held, names = onto.labels("train"), onto.labels("heldout"), onto.names
        aligned = align(sae, onto, activations=a["train"], config=align_cfg)
        perm = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
        shuffled = align(sae, onto, activations=a["train"], labels=y[perm], config=align_cfg)
        probe = linear_probe(a["train"], y, a["heldout"], y_held, names, seed=seed)
        dm = diffmean_directions(a["train"], y, len(names))
        for reader, acc in {
            "aligned": binding_metrics(encode_in_chunks(aligned, a["heldout"], concepts_only=True), y_held, names),
            "shuffled": binding_metrics(encode_in_chunks(shuffled, a["heldout"], concepts_only=True), y_held, names),
            "probe": probe["binding_heldout"],
            "diffmean": diffmean_binding(a["heldout"], y_held, dm, names),
            "sae_latent": stage1_best_latents(sae, a["train"], y, names, a["heldout"], y_held)["binding_heldout"],
        }.items():
            out[key(series, reader)] = acc["accuracy"]
        if series.startswith("bridge"):
            offset = 0 if pos == "last" else R1_OFFSET
            val, test = bridge_trials(world, names, cfg.swap_items, seed)
            g = torch.Generator().manual_seed(seed)
            random_dirs = torch.randn(dm["means"].shape, generator=g)
            random_dirs *= dm["means"].norm(dim=-1, keepdim=True) / random_dirs.norm(dim=-1, keepdim=True)
            editors: dict[str, Editor] = {
                "aligned": SlotEditor(aligned, hook_name=cfg.hook_name),
                "probe": DirectionEditor(probe_directions(probe, dm["means"]), names, cfg.hook_name),
                "diffmean": DirectionEditor(dm["means"], names, cfg.hook_name),
                "random": DirectionEditor(random_dirs, names, cfg.hook_name),
            }
            for method, ed in editors.items():
                r = chosen_swap(model, ed, val, test, cfg.alphas, offset)
                out[swap_key(series, method)] = r["exact"]
                out[swap_key(series, method) + ".alpha"] = r["alpha"]
    return out
