"""Swaps (A → B) through hook points, and their evaluation over many trials.

All edits act on the residual at the SAE's own hook (`cfg.metadata.hook_name`, the site the SAE was trained on),
at the last prompt token, on the prefill pass only, through one hook function (`edit_hooks`). The edit itself is an `Editor` (interventions.editors), whose
`unit` says what α means: for an AlignedSAE, mode "delta" (default; α × the target's slot scale, error term kept),
"paper" (α is the slot value; h ← decode(z')) or "steer" (α × ‖h‖ along B's decoder row).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor

from align_lens.adapter import EditSite, answer_tokens, tokenize
from align_lens.evals.decoding import SCORERS, decode_tokens, greedy_decode, max_answer_len, normalize, score_generation
from align_lens.interventions.editors import ALPHAS, as_editor
from align_lens.interventions.trials import SwapTrial, answer_lookup, build_trials
from align_lens.ontology import Example, Ontology, index_of

# =============================================================================================
# hooks for model.hooks / run_with_hooks / generate
# =============================================================================================


def edit_hooks(
    hook_name: str,
    edit: Callable[[Tensor], Tensor],
    position: int | Tensor = -1,
    prefill_only: bool = True,
    span: bool = False,
) -> list[tuple[EditSite, Callable]]:
    """Forward hooks that replace the residual at `hook_name`, at `position` of each row, by `edit(resid)`.

    `edit` maps the rows' residuals [b, d] at their positions to new ones. `position` is an index into the
    sequence: an int for every row or a LongTensor with one per row (negative counts from the end). With
    `prefill_only` the edit is skipped on one-token passes (the decode steps of a KV-cached `generate`); a
    decoder that re-runs the whole sequence every step passes absolute positions and `prefill_only=False`, so
    every pass is edited the same way. `span=True` edits every position from `position` on (the generated
    answer tokens too: on a KV-cached decode step, the one new position), so an answer of several tokens is
    written under the edit throughout. This is the one edit hook: `swap_hooks` and every greedy decoding with an
    edit (swap evaluation, spliced task accuracy, slot interchange) install it.
    """

    def hook_fn(x: Tensor, hook) -> Tensor:
        b, t = x.shape[:2]
        ar = torch.arange(b, device=x.device)
        if t == 1 and prefill_only:
            if not span:
                return x  # a KV-cache decode step
            x = x.clone()
            x[:, 0] = edit(x[:, 0]).to(x.dtype)
            return x
        pos = position.to(x.device) if isinstance(position, Tensor) else torch.full((b,), position, device=x.device)
        pos = torch.where(pos < 0, pos + t, pos)
        x = x.clone()
        for k in range(t - int(pos.min()) if span else 1):
            at = pos + k
            keep = at < t
            at = at.clamp(max=t - 1)
            new = edit(x[ar, at]).to(x.dtype)
            x[ar[keep], at[keep]] = new[keep]
        return x

    return [(EditSite(hook_name), hook_fn)]


def swap_hooks(
    aligned,
    source: str | Tensor,
    target: str | Tensor,
    alpha: float,
    mode: str = "delta",
    position: int | Tensor = -1,
    hook_name: str | None = None,
    prefill_only: bool = True,
    span: bool = False,
) -> list[tuple[EditSite, Callable]]:
    """Forward hooks that swap concept `source` for `target` at `position`, with strength `alpha`.

    `alpha` is in the unit of the editor (`repr` of the editor shows it): with an AlignedSAE, `mode="delta"`
    (default) means α × the target's typical slot value (`cfg.concept_scales`), `"paper"` the target slot's
    absolute value, `"steer"` a fraction of ‖h‖; an `Editor` passed as `aligned` brings its own `unit`.
    `source` and `target` are concept names (the same swap on every row) or LongTensors of concept indices, one
    per row of the batch (a different swap on each row, as `evaluate_swaps` runs them).

    Use with `with model.hooks(fwd_hooks=swap_hooks(...)):`, `model.run_with_hooks(..., fwd_hooks=...)` or around
    `model.generate(...)`. The edit is applied only on passes that see more than one token, i.e. the prefill
    pass of a KV-cached `generate` (its later passes see one new token and are left alone). `position` is an
    index into the sequence (default -1 = last prompt token; with several prompts of different lengths pass a
    LongTensor of absolute positions, one per row). With `generate(use_past_kv_cache=False)` every pass re-runs
    the whole sequence, so give an absolute position (≥ 0) there. `prefill_only=False` edits one-token passes too.
    `aligned` may also be an `Editor` (baselines). The hook name is an `adapter.EditSite`: with SAELens'
    HookedSAETransformer and an SAE attached at that hook (`model.add_sae`), the edit applies to the attached SAE's
    output (`<hook>.hook_sae_output`), i.e. to what flows on. The hook itself is `edit_hooks`'. `span=True`
    edits every position from `position` on, the generated tokens included (for answers of several tokens, whose
    later tokens re-read the question at a layer past the edit).
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number (the edit strength), got {alpha!r}")
    ed = as_editor(aligned, mode, hook_name)
    if ed.hook_name is None:
        raise ValueError("no hook name: the SAE has no cfg.metadata.hook_name; pass hook_name=")
    s, t = (c if isinstance(c, Tensor) else ed.index(c) for c in (source, target))

    def rows(c: int | Tensor, b: int) -> Tensor:
        return c.cpu() if isinstance(c, Tensor) else torch.full((b,), c, dtype=torch.long)

    return edit_hooks(
        ed.hook_name, lambda h: ed(h, rows(s, len(h)), rows(t, len(h)), alpha), position, prefill_only, span
    )


# =============================================================================================
# swap evaluation
# =============================================================================================

# Per-pair success matrices (and their trial counts) are kept up to this many concepts: beyond it a c × c list
# per α and scorer would outweigh the trials themselves (1,000 concepts: a million cells each).
PAIR_LIMIT = 200


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson 95% interval of a rate k/n."""
    if n == 0:
        return (float("nan"), float("nan"))
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return (c - h, c + h)


@dataclass
class SwapResults:
    """Swap success by α for each scorer ("first_token", "exact", "lenient"), per-pair matrices
    (rows = source A, cols = target B), kept-A and type-B rates, counts, the trials and, per trial and α, what
    the model generated (`outputs`), plus a few example generations for reports. α is in `unit`."""

    mode: str
    unit: str
    names: list[str]
    alphas: list[float]
    success: dict[str, list[float]]  # scorer -> one rate per alpha
    ci: dict[str, list[tuple[float, float]]]  # scorer -> Wilson 95% interval per alpha
    pair: dict[str, list[list[list[float]]]]  # scorer -> alpha -> c x c (empty beyond PAIR_LIMIT concepts)
    kept_source: list[float]  # output is still A's answer
    type_target: list[float]  # output is some value of B's type
    clean_accuracy: float  # exact accuracy of the unedited model on the base prompts
    counts: dict[str, Any]
    trials: list[SwapTrial] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)  # one row per (trial, alpha)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def best(self, scorer: str = "exact") -> tuple[float, float]:
        """(α, success) at the α with the highest success for `scorer`."""
        rates = self.success[scorer]
        i = int(np.nanargmax(rates))
        return self.alphas[i], rates[i]

    def table(self) -> list[dict[str, float]]:
        """One row per α: the three success rates, kept-A and type-B."""
        return swap_table(asdict(self))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def swap_table(results: Mapping[str, Any]) -> list[dict[str, float]]:
    """One row per α of a `SwapResults.to_dict()`: the three success rates, kept-A and type-B."""
    return [
        {
            "alpha": a,
            **{s: results["success"][s][i] for s in SCORERS},
            "kept_source": results["kept_source"][i],
            "type_target": results["type_target"][i],
        }
        for i, a in enumerate(results["alphas"])
    ]


def _as_trials(trials: Sequence[SwapTrial | Mapping], names: list[str]) -> list[SwapTrial]:
    out = [t if isinstance(t, SwapTrial) else SwapTrial(**t) for t in trials]
    if not out:
        raise ValueError("trials= is empty; give at least one SwapTrial (see sample_swap_trials)")
    for t in out:
        for name in (t.source, t.target):
            index_of(names, name)  # raises for a concept the editor does not have
    return out


@torch.no_grad()
def evaluate_swaps(
    model,
    aligned,
    examples: Ontology | Sequence[Example] | None = None,
    alphas: Sequence[float] = ALPHAS,
    mode: str = "delta",
    max_items: int | None = None,
    batch_size: int = 128,
    lookup: Ontology | Sequence[Example] | Mapping | None = None,
    max_new_tokens: int | None = None,
    n_show: int = 6,
    seed: int = 0,
    hook_name: str | None = None,
    trials: Sequence[SwapTrial | Mapping] | None = None,
    span: bool = False,
    offset: int = 0,
    start: int | None = None,
) -> SwapResults:
    """Swap A → B on prompts of concept A and check for the same entity's B answer, at every α.

    The trials are either given (`trials=`, e.g. from `sample_swap_trials` or a saved `SwapResults.trials`) or
    drawn from `examples` by `sample_swap_trials(examples, names, lookup, max_items, seed)`: every ordered pair of
    the editor's concepts on at most `max_items` base prompts per source concept (pass `ontology.select("heldout")`
    for held-out templates and the full ontology as `lookup`). Same trials, `lookup` and `max_new_tokens` → same
    per-trial outputs (`seed` then only picks the shown examples). `lookup` ((entity, concept) → answer) also
    defines each concept's values for the "type_target" rate and, with the golds, the generation length.
    `aligned` may be an AlignedSAE (edited with `mode`) or any `Editor` (baselines); α is in its `unit`; the
    default grid is `ALPHAS`. Every trial is decoded by `greedy_decode` under `swap_hooks` (per-row concepts, the
    last prompt position of each row), the hooks users install: what is scored is what `model.generate` gives.
    `span=True`: the edit also covers every generated position (`swap_hooks(span=True)`). `offset` (≤ 0) moves
    the edit back from the last prompt token, e.g. -2 edits the token two before it in every prompt (for concepts
    read earlier in prompts of one shape); each trial's own `SwapTrial.offset` adds to it (e.g. the edit at a name
    inside questions of different lengths). `start` (with `span=True`): the edit instead begins at that absolute
    position of every prompt (1: the first token after BOS) and covers every later one, for a concept whose
    information has moved from the last token to earlier positions by the hooked layer.
    """
    if isinstance(offset, bool) or not isinstance(offset, int) or offset > 0:
        raise ValueError(f"offset must be an int ≤ 0 (tokens back from the last prompt token), got {offset!r}")
    if start is not None and (isinstance(start, bool) or not isinstance(start, int) or start < 0 or not span):
        raise ValueError(f"start must be an int ≥ 0 given with span=True (edit from that position on), got {start!r}")
    ed = as_editor(aligned, mode, hook_name)
    if ed.hook_name is None:
        raise ValueError("no hook name: set the SAE's cfg.metadata.hook_name or pass hook_name=")
    names = list(ed.names)
    if trials is not None:
        trials = _as_trials(trials, names)
        counts: dict[str, Any] = {
            "n_items": len({t.prompt for t in trials}),
            "skipped_same_answer": 0,
            "skipped_missing": 0,
        }
    elif examples is not None:
        trials, counts = build_trials(examples, names, lookup, max_items, seed)
    else:
        raise ValueError("give examples= (trials are drawn from them with seed=) or trials=")
    table = answer_lookup(lookup if lookup is not None else examples if examples is not None else {})
    values: dict[str, set[str]] = {}
    for (_, c), a in table.items():
        values.setdefault(c, set()).add(normalize(a))
    for t in trials:
        values.setdefault(t.target, set()).add(normalize(t.gold))
    c = len(names)
    shift = torch.tensor([t.offset for t in trials], dtype=torch.long)
    if (shift > 0).any():
        raise ValueError("a trial's offset must be ≤ 0 (tokens back from the last prompt token)")
    src = torch.tensor([names.index(t.source) for t in trials])
    tgt = torch.tensor([names.index(t.target) for t in trials])
    max_new = max_new_tokens or max_answer_len(model, [t.gold for t in trials] + list(table.values())) + 1
    prompts = list(dict.fromkeys(t.prompt for t in trials))
    row_of = {p: i for i, p in enumerate(prompts)}
    prompt_toks = tokenize(model, prompts)
    trial_toks = [prompt_toks[row_of[t.prompt]] for t in trials]
    gold_ids = {g: answer_tokens(model, g) for g in dict.fromkeys(t.gold for t in trials)}
    clean = greedy_decode(model, prompt_toks, max_new, batch_size=batch_size)
    clean_text = [decode_tokens(model, g) for g in clean]
    answer_of = {t.prompt: t.source_answer for t in trials}
    clean_acc = float(np.mean([text == normalize(answer_of[p]) for text, p in zip(clean_text, prompts)]))

    success: dict[str, list] = {s: [] for s in SCORERS}
    ci: dict[str, list] = {s: [] for s in SCORERS}
    pair: dict[str, list] = {s: [] for s in SCORERS}
    kept, typed, outputs = [], [], []
    texts: list[dict[float, str]] = [{} for _ in trials]
    pair_counts = torch.zeros(c, c, dtype=torch.long)
    pair_counts.index_put_((src, tgt), torch.ones_like(src), accumulate=True)
    for alpha in alphas:

        def hooks(rows: Tensor, last: Tensor, alpha=float(alpha)) -> list:
            at = last + offset + shift[rows].to(last.device) if start is None else torch.full_like(last, start)
            return swap_hooks(ed, src[rows], tgt[rows], alpha, position=at, prefill_only=False, span=span)

        gens = greedy_decode(model, trial_toks, max_new, batch_size, hooks)
        hits = {s: torch.zeros(c, c) for s in SCORERS}
        n_kept = n_typed = 0
        totals = dict.fromkeys(SCORERS, 0)
        for k, (t, g) in enumerate(zip(trials, gens)):
            sc = score_generation(model, g, t.gold, gold_ids[t.gold])
            a, b = int(src[k]), int(tgt[k])
            for s in SCORERS:
                hits[s][a, b] += sc[s]
                totals[s] += sc[s]
            text = decode_tokens(model, g)
            texts[k][float(alpha)] = text
            n_kept += text == normalize(t.source_answer)
            n_typed += text in values.get(t.target, set())
            outputs.append(
                {"trial": k, "prompt": t.prompt, "source": t.source, "target": t.target, "alpha": float(alpha)}
                | {"generated": text, "gold": t.gold, **sc}
            )
        n = len(trials)
        for s in SCORERS:
            success[s].append(totals[s] / n)
            ci[s].append(wilson(totals[s], n))
            m = hits[s] / pair_counts.clamp_min(1)
            m[pair_counts == 0] = float("nan")
            pair[s].append(m.tolist() if c <= PAIR_LIMIT else [])
        kept.append(n_kept / n)
        typed.append(n_typed / n)
    show = sorted(random.Random(seed).sample(range(len(trials)), min(n_show, len(trials))))
    examples_shown = [
        {
            "prompt": trials[k].prompt,
            "entity": trials[k].entity,
            "source": trials[k].source,
            "target": trials[k].target,
            "source_answer": trials[k].source_answer,
            "target_answer": trials[k].gold,
            "clean": clean_text[row_of[trials[k].prompt]],
            "outputs": texts[k],
        }
        for k in show
    ]
    return SwapResults(
        mode=getattr(ed, "mode", type(ed).__name__),
        unit=ed.unit,
        names=names,
        alphas=[float(a) for a in alphas],
        success=success,
        ci=ci,
        pair=pair,
        kept_source=kept,
        type_target=typed,
        clean_accuracy=clean_acc,
        counts=counts | {"n_trials": len(trials), "pair_counts": pair_counts.tolist() if c <= PAIR_LIMIT else []},
        trials=list(trials),
        outputs=outputs,
        examples=examples_shown,
    )
