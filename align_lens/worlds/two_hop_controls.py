"""Controls and splits of the two-hop study (`two_hop_study.run_two_hop_study`).

readings           held-out binding of one model's readers, grouped by step, by held-out phrasing and for the
                   bridge entity: aligned slots, and on request a shuffled-label floor (Stage 2 on permuted
                   training labels) and the Stage-1 SAE's best latent per concept (`stage1_best_latents`, chosen
                   on training activations). Run on an untrained model, the aligned reader is the other floor.
chain_split        the step-1 swap split at the bridge: the first hop (the first generated token is e2') and
                   the rest (the whole chain exact, among the trials whose first hop is right)
accuracy_by_phrasing  the model's own exact chain accuracy on held-out compositions, per question frame
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Int
from torch import Tensor

from align_lens.activations.gather import gather_activations
from align_lens.analysis.baselines import stage1_best_latents
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.ontology import Ontology
from align_lens.training.config import AlignConfig
from align_lens.training.stage2 import align
from align_lens.worlds.two_hop import step_of
from align_lens.worlds.two_hop_model import encode, exact_accuracy

READERS = ("aligned", "shuffled_labels", "sae_latent")


def shuffled(labels: Int[Tensor, " n"], seed: int) -> Int[Tensor, " n"]:
    """`labels` in a seeded random order: the same label counts, each bound to a random activation."""
    return labels[torch.randperm(len(labels), generator=torch.Generator().manual_seed(seed))]


@dataclass
class Site:
    """One hook's ontology, scored on held-out activations with named groups (e.g. "step1", "step1/h0")."""

    onto: Ontology
    hook: str
    scored: list[tuple[Ontology, list[list[str]]]]  # (ontology, group lists) whose held-out examples are scored


def groups(onto: Ontology, by: str) -> list[str]:
    """One group name per held-out example: by "step" ("step1"), "step_frames" ("step1_heldout_frames"),
    "frame" (the template, "step1/h0") or a fixed name (e.g. "bridge_entity")."""
    held = onto.select("heldout")
    if by == "step":
        return [step_of(e) for e in held]
    if by == "step_frames":
        return [f"{step_of(e)}_heldout_frames" for e in held]
    if by == "frame":
        return [e.template or "" for e in held]
    return [by] * len(held)


def readings(
    model, sae, site: Site, align_cfg: AlignConfig, readers: tuple[str, ...], seed: int
) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Held-out binding {reader: {group: accuracy}} at one site, every reader fitted on training activations
    only; and what the swaps reuse: {"aligned", "sae_latent" (the `stage1_best_latents` result), "train_acts"}."""
    unknown = set(readers) - set(READERS)
    if unknown:
        raise ValueError(f"unknown readers {sorted(unknown)}; choose from {READERS}")
    onto = site.onto
    train = gather_activations(model, onto.prompts("train"), site.hook, "last", 256)
    y = onto.labels("train")
    fitted: dict[str, Any] = {"train_acts": train}
    score: dict[str, Any] = {}
    if "aligned" in readers:
        fitted["aligned"] = align(sae, onto, activations=train, config=align_cfg)
        score["aligned"] = lambda a: encode_in_chunks(fitted["aligned"], a, concepts_only=True)
    if "shuffled_labels" in readers:
        floor = align(sae, onto, activations=train, labels=shuffled(y, seed), config=align_cfg)
        score["shuffled_labels"] = lambda a: encode_in_chunks(floor, a, concepts_only=True)
    if "sae_latent" in readers:
        fitted["sae_latent"] = best = stage1_best_latents(sae, train, y, onto.names)
        score["sae_latent"] = lambda a: encode_in_chunks(sae, a)[:, best["latents"]]
    out: dict[str, dict[str, float]] = {r: {} for r in readers}
    for scored, group_lists in site.scored:
        held = gather_activations(model, scored.prompts("heldout"), site.hook, "last", 256)
        y_held = scored.labels("heldout", order=onto.names)
        for reader, fn in score.items():
            z = fn(held)
            for g in group_lists:
                out[reader] |= binding_metrics(z, y_held, onto.names, templates=g)["per_template"]
    return out, fitted


def chain_split(test: dict[str, Any]) -> dict[str, float]:
    """The step-1 swap's test trials (a `SwapResults.to_dict()` at one α) split at the bridge: first_hop = share
    whose first generated token is e2' = f(e1, r'); rest_given_first_hop = share of those whose whole chain
    "e2' e3' <eos>" is exact; whole = share exact."""
    rows = test["outputs"]
    if not rows or len(test["alphas"]) != 1:
        raise ValueError("give the test results of exactly one α with at least one trial")
    first = [r for r in rows if r["first_token"]]
    return {
        "first_hop": len(first) / len(rows),
        "rest_given_first_hop": sum(r["exact"] for r in first) / len(first) if first else float("nan"),
        "whole": sum(r["exact"] for r in rows) / len(rows),
    }


def accuracy_by_phrasing(model, onto: Ontology, step: str = "step1") -> dict[str, float]:
    """The model's greedy-exact accuracy (answer then <eos>) on `step`'s held-out examples, per question frame
    (the frame id after "step1/")."""
    by: dict[str, list] = {}
    for e in onto.select("heldout"):
        if step_of(e) == step:
            by.setdefault((e.template or "").split("/")[-1], []).append(e)
    if not by:
        raise ValueError(f"no held-out {step} examples in the ontology")
    return {
        frame: exact_accuracy(model, *encode(model.tokenizer, [e.prompt for e in ex], [e.answer for e in ex]))
        for frame, ex in sorted(by.items())
    }
