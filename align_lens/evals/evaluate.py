"""One evaluation of an aligned SAE: `evaluate(model, aligned, ontology, EvalConfig(...))` → one result dict.

The demo, the CLI's `eval`, the studies and the baselines table all read their numbers from this one result
shape (keys in `HEADLINE` and `DETAILS`), so a number has one name everywhere. With
`EvalConfig(validation_entities=n)` the swap mode and α are chosen on n entities and reported on the others
(`selection.choose_swap`, the one place a swap strength is chosen on validation).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from jaxtyping import Float
from torch import Tensor

from align_lens.activations.gather import gather_activations
from align_lens.adapter import check_sae_fits
from align_lens.evals.binding import binding_metrics, encode_in_chunks, fragmentation
from align_lens.evals.decoding import SCORERS
from align_lens.evals.fidelity import fidelity, task_accuracy
from align_lens.evals.selection import Candidate, choose_swap, people_split
from align_lens.interventions.editors import ALPHAS, MODES, slot_editor
from align_lens.interventions.swaps import SwapResults, evaluate_swaps
from align_lens.interventions.trials import SwapTrial
from align_lens.ontology import Ontology

NAN = float("nan")

# Scalars, always present (NaN when not measured: no held-out split, no Stage-1 SAE, swaps or tasks switched off).
HEADLINE = (
    "binding_train",  # argmax over the slots == the concept, training prompts
    "binding_heldout",  # the same on held-out prompts
    "binding_heldout_hungarian",  # held-out, after matching concepts to slots (permutation-invariant)
    "explained_variance_aligned",  # on `tokens` when given, else on the training prompts (`fidelity_on`)
    "explained_variance_stage1",
    "l0_aligned",
    "l0_stage1",
    "dead_fraction_aligned",  # free latents never active
    "dead_fraction_stage1",
    "eff_feat_slots",  # fragmentation: effective number of slots per concept (1 = one slot carries it)
    "eff_feat_all",  # the same over all latents
    "task_acc_clean",  # exact answer accuracy of the unedited model
    "task_acc_aligned_spliced",  # aligned reconstruction replaces the last prompt token's activation (no error term)
    "task_acc_stage1_spliced",
    "swap_exact_best",  # best swap success over α, per scorer
    "swap_first_token_best",
    "swap_lenient_best",
    "swap_best_alpha",  # the α of swap_exact_best (of `EvalConfig.best_by`), in the editor's unit
    "swap_kept_source_at_best",  # at swap_best_alpha: output still A's answer
    "swap_type_target_at_best",  # at swap_best_alpha: output some value of B's type
    "swap_trials",
    "swap_exact_chosen",  # with validation_entities: exact success on the test entities at the (mode, α) chosen
    "swap_chosen_alpha",  # on the validation entities, its α, its Wilson 95 % interval and the validation rate
    "swap_chosen_ci_low",
    "swap_chosen_ci_high",
    "swap_exact_validation",
)
# Details: concepts (SAE order), fidelity_on, binding {train, heldout}, fidelity {aligned, stage1},
# fragmentation, task_accuracy {clean, aligned_spliced, stage1_spliced}, swap (SwapResults.to_dict(): with
# validation_entities, of the test entities), swap_choice (`choose_swap`'s result without "test": mode, α, ...).
DETAILS = ("concepts", "fidelity_on", "binding", "fidelity", "fragmentation", "task_accuracy", "swap", "swap_choice")


@dataclass
class EvalConfig:
    """What `evaluate` measures and how much of it; the defaults are the demo's."""

    alphas: tuple[float, ...] = ALPHAS  # swap strengths, in the editor's unit
    swap_mode: str = "delta"  # "delta" (α × slot scale), "paper" (α = slot value) or "steer" (α × ‖h‖)
    # > 0: choose (mode, α) on this many entities' prompts of `split` (a seeded draw, `people_split`), report swaps on
    # `test_entities` others (None: all the others); 0: every entity, best α on the reported trials (optimistic)
    validation_entities: int = 0
    test_entities: int | None = None
    modes: tuple[str, ...] = ()  # modes to choose from on validation (default: just swap_mode)
    split: str = "heldout"  # prompts for swaps and task accuracy (all examples when the split is empty)
    swap_items: int | None = 40  # base prompts per source concept (seeded sample); None: all
    swap_trials: list[SwapTrial] | None = None  # explicit trials or their dicts (overrides swap_items and seed)
    best_by: str = "exact"  # scorer that picks swap_best_alpha: "exact", "first_token" or "lenient"
    task_items: int | None = 300  # about this many prompts (every k-th) for task accuracy; None: all
    swaps: bool = True
    task_accuracy: bool = True
    batch_size: int = 128  # greedy decoding
    gather_batch_size: int = 128  # activation gathering
    device: str | None = None  # move model and SAEs here first; None: leave them where they are
    seed: int = 0

    def __post_init__(self) -> None:
        if self.best_by not in SCORERS:
            raise ValueError(f"best_by must be one of {SCORERS}, got {self.best_by!r}")
        for m in self.modes or (self.swap_mode,):
            if m not in MODES:
                raise ValueError(f"swap modes must be among {MODES}, got {m!r}")
        if self.modes and not self.validation_entities:
            raise ValueError("modes= are chosen among on validation: set validation_entities > 0 (or use swap_mode)")
        if self.validation_entities < 0:
            raise ValueError(
                f"validation_entities must be ≥ 0 (0: no validation split), got {self.validation_entities}"
            )


def split_activations(
    model, ontology: Ontology, hook: str, batch_size: int = 128, progress: bool = False
) -> dict[str, Float[Tensor, "n d"]]:
    """Last-token activations of the "train" and "heldout" prompts at `hook` (no "heldout" key without them)."""
    return {
        s: gather_activations(model, ontology.prompts(s), hook, batch_size=batch_size, progress=progress)
        for s in ("train", "heldout")
        if ontology.select(s)
    }


def headline(result: Mapping[str, Any]) -> dict[str, float]:
    """The scalar entries of an `evaluate` result (the `HEADLINE` keys)."""
    return {k: result[k] for k in HEADLINE}


def _binding(aligned, acts: Tensor, ontology: Ontology, split: str, names: list[str]) -> dict[str, Any]:
    templates = [e.template or "" for e in ontology.select(split)]
    z = encode_in_chunks(aligned, acts, concepts_only=True)
    return binding_metrics(z, ontology.labels(split, order=names), names, templates)


def _task_accuracy(model, aligned, stage1, examples, names, config: EvalConfig) -> dict[str, Any]:
    items = [e for e in examples if e.answer is not None]
    items = items[:: max(1, len(items) // (config.task_items or 10**9))]
    if not items:
        return {}
    kw = {"batch_size": config.batch_size, "names": names}
    out = {"clean": task_accuracy(model, items, **kw)}
    out["aligned_spliced"] = task_accuracy(model, items, aligned, use_error_term=False, positions="last", **kw)
    if stage1 is not None:
        out["stage1_spliced"] = task_accuracy(model, items, stage1, use_error_term=False, positions="last", **kw)
    return out


@torch.no_grad()
def evaluate(
    model,
    aligned,
    ontology: Ontology,
    config: EvalConfig | None = None,
    *,
    stage1=None,
    tokens: Float[Tensor, "n d_in"] | None = None,
    acts: dict[str, Tensor] | None = None,
) -> dict[str, Any]:
    """Binding, fidelity, fragmentation, spliced task accuracy and swaps of `aligned` on `ontology`.

    Concepts are matched by name: the ontology may list the SAE's concepts in any order (every per-concept
    table comes out in the SAE's `cfg.concept_names` order); an ontology whose concepts differ from the SAE's
    raises. `stage1` (the SAE it was aligned from) adds its fidelity and spliced task accuracy for comparison;
    `tokens` (activations of every token of ordinary text at the SAE's hook) is where fidelity is measured
    (default: the training prompts' activations); `acts` ({"train", "heldout"} last-token activations of the
    ontology's prompts, as `split_activations` returns) skips gathering them again.

    Returns a dict with every key of `HEADLINE` (floats; NaN when not measured) and of `DETAILS`.
    """
    config = config or EvalConfig()
    if config.device is not None:
        model.to(config.device)
        aligned.to(config.device)
        if stage1 is not None:
            stage1.to(config.device)
    hook = check_sae_fits(model, aligned)
    names = list(aligned.cfg.concept_names)
    ontology.labels(order=names)  # raises when the concepts differ from the SAE's
    acts = acts or split_activations(model, ontology, hook, config.gather_batch_size)
    out: dict[str, Any] = {k: NAN for k in HEADLINE}
    out.update({k: None for k in DETAILS})
    out["concepts"] = names

    train, held = _binding(aligned, acts["train"], ontology, "train", names), None
    if acts.get("heldout") is not None and ontology.select("heldout"):
        held = _binding(aligned, acts["heldout"], ontology, "heldout", names)
        out["binding_heldout"] = held["accuracy"]
        out["binding_heldout_hungarian"] = held["hungarian_accuracy"]
    out["binding"] = {"train": train, "heldout": held}
    out["binding_train"] = train["accuracy"]

    fid_acts = tokens if tokens is not None else acts["train"]
    out["fidelity_on"] = "tokens" if tokens is not None else "train_prompts"
    out["fidelity"] = {"aligned": fidelity(aligned, fid_acts)}
    if stage1 is not None:
        out["fidelity"]["stage1"] = fidelity(stage1, fid_acts)
    for who, fid in out["fidelity"].items():
        out[f"explained_variance_{who}"] = fid["explained_variance"]
        out[f"l0_{who}"] = fid["l0"]
        out[f"dead_fraction_{who}"] = fid["dead_fraction"]

    frag_split = "heldout" if held is not None else "train"
    z = encode_in_chunks(aligned, acts[frag_split])
    frag = fragmentation(z, ontology.labels(frag_split, order=names), aligned.cfg.concept_slots, names)
    out["fragmentation"] = frag | {"split": frag_split}
    out["eff_feat_slots"], out["eff_feat_all"] = frag["mean"]["eff_feat_slots"], frag["mean"]["eff_feat_all"]

    examples = ontology.select(config.split) or ontology.select()
    if config.task_accuracy:
        task = _task_accuracy(model, aligned, stage1, examples, names, config)
        out["task_accuracy"] = task
        for key in ("clean", "aligned_spliced", "stage1_spliced"):
            if key in task:
                out[f"task_acc_{key}"] = task[key]["exact"]

    if config.swaps and config.validation_entities:
        out |= _chosen_swaps(model, aligned, ontology, examples, config)
    elif config.swaps:
        swaps = evaluate_swaps(
            model,
            aligned,
            examples,
            alphas=config.alphas,
            mode=config.swap_mode,
            max_items=config.swap_items,
            batch_size=config.batch_size,
            lookup=ontology,
            seed=config.seed,
            trials=config.swap_trials,
        )
        out["swap"] = swaps.to_dict()
        out |= swap_headline(swaps, config.best_by)
    return out


def _chosen_swaps(model, aligned, ontology: Ontology, examples, config: EvalConfig) -> dict[str, Any]:
    """Swaps with (mode, α) chosen on `config.validation_entities` entities and reported on the test entities."""
    if config.swap_trials is not None:
        raise ValueError("swap_trials and validation_entities exclude each other: give one")
    people = people_split(ontology, config.validation_entities, config.test_entities, config.seed)
    candidates = [Candidate(m, slot_editor(aligned, m), config.alphas) for m in config.modes or (config.swap_mode,)]
    r = choose_swap(
        model,
        candidates,
        [e for e in examples if e.entity in people["val"]],
        [e for e in examples if e.entity in people["test"]],
        ontology,
        val_items=config.swap_items,
        test_items=config.swap_items,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    test = r.pop("test")
    return (
        {"swap": test, "swap_choice": r}
        | swap_headline(SwapResults(**test), config.best_by)
        | {
            "swap_exact_chosen": r["test_exact"],
            "swap_chosen_alpha": r["alpha"],
            "swap_chosen_ci_low": r["test_ci"][0],
            "swap_chosen_ci_high": r["test_ci"][1],
            "swap_exact_validation": r["val_exact"],
        }
    )


def swap_headline(swaps: SwapResults, best_by: str = "exact") -> dict[str, float]:
    """The swap_* headline numbers of one `evaluate_swaps` result (any editor: baselines use it too)."""
    best_alpha = swaps.best(best_by)[0]
    i = swaps.alphas.index(best_alpha)
    return {f"swap_{s}_best": swaps.best(s)[1] for s in SCORERS} | {
        "swap_best_alpha": best_alpha,
        "swap_kept_source_at_best": swaps.kept_source[i],
        "swap_type_target_at_best": swaps.type_target[i],
        "swap_trials": swaps.counts["n_trials"],
    }
