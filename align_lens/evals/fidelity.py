"""Fidelity of an SAE to the model: explained variance, dead latents, spliced task accuracy, CE / KL."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from align_lens.adapter import answer_tokens, check_sae_fits, pad_right, run_with_hooks, spliced, tokenize
from align_lens.evals.decoding import greedy_decode, max_answer_len, score_generation
from align_lens.interventions.swaps import edit_hooks
from align_lens.ontology import Example, Ontology, as_examples

# =============================================================================================
# fidelity
# =============================================================================================


@torch.no_grad()
def fidelity(sae, acts: Float[Tensor, "n d_in"], batch_size: int = 4096) -> dict[str, Any]:
    """Reconstruction quality and sparsity of `sae` on activations.

    explained_variance  1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²  (SAELens' definition, over the whole set)
    mse                 mean squared error per element;  mse_per_row: summed over features, mean over rows
    cossim              mean cosine(x, x̂)
    l0                  mean number of active latents per row (l0_free / l0_concepts for aligned SAEs)
    dead_fraction       fraction of latents never active on these rows (free latents only for aligned SAEs,
                        with dead_slots counting concept slots that never fire)
    """
    if acts.ndim != 2 or acts.shape[1] != sae.cfg.d_in:
        raise ValueError(f"acts must be [n, {sae.cfg.d_in}], got {tuple(acts.shape)}")
    dev = sae.W_dec.device
    sq_err, n_el, cos, l0, fired = 0.0, 0, 0.0, [], torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    x_all = acts.double()
    centred = float(((x_all - x_all.mean(0)) ** 2).sum())
    for chunk in acts.split(batch_size):
        x = chunk.to(dev, sae.dtype)
        z = sae.encode(x)
        x_hat = sae.decode(z)
        sq_err += float(((x_hat - x).double() ** 2).sum())
        n_el += x.numel()
        cos += float(torch.nn.functional.cosine_similarity(x_hat.float(), x.float(), dim=-1).sum())
        active = z > 0
        l0.append(active.float().cpu())
        fired |= active.any(0).cpu()
    act = torch.cat(l0)
    n = len(acts)
    out = {
        "explained_variance": 1 - sq_err / max(centred, 1e-12),
        "mse": sq_err / max(n_el, 1),
        "mse_per_row": sq_err / max(n, 1),
        "cossim": cos / max(n, 1),
        "l0": float(act.sum(1).mean()),
        "dead_fraction": float((~fired).float().mean()),
        "n": n,
    }
    nc = len(getattr(sae.cfg, "concept_names", []) or [])
    if nc:
        nf = sae.cfg.d_sae - nc
        out["l0_free"] = float(act[:, :nf].sum(1).mean())
        out["l0_concepts"] = float(act[:, nf:].sum(1).mean())
        out["dead_fraction"] = float((~fired[:nf]).float().mean())
        out["dead_slots"] = int((~fired[nf:]).sum())
    return out


# =============================================================================================
# task accuracy with the SAE spliced in
# =============================================================================================


@torch.no_grad()
def task_accuracy(
    model,
    examples: Ontology | Sequence[Example],
    sae=None,
    use_error_term: bool = True,
    batch_size: int = 64,
    max_new_tokens: int | None = None,
    names: Sequence[str] | None = None,
    positions: str = "all",
) -> dict[str, Any]:
    """Greedy answer accuracy of `model` on examples with answers, optionally with `sae` spliced in.

    With `sae` and `use_error_term=False` the SAE reconstruction replaces the activation (the fidelity test):
    at every position and step (`positions="all"`, SAELens' `add_sae`), or only at the last prompt token
    (`positions="last"`, the distribution an SAE trained on last-token activations has seen). With
    `use_error_term=True` (SAELens' exact splice) the output equals the clean model's and the call is a sanity
    check. `sae=None` scores the clean model.

    Returns {first_token, exact, lenient, n, per_concept: {name: {first_token, exact, lenient, n}}}.
    """
    items = [e for e in as_examples(examples) if e.answer is not None]
    if not items:
        raise ValueError("no examples with answers")
    answers = [e.answer for e in items if e.answer is not None]  # all of them (typed as str)
    max_new = max_new_tokens or max_answer_len(model, answers) + 1
    prompts = [e.prompt for e in items]
    if positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all' or 'last', got {positions!r}")
    if sae is not None and positions == "last":
        if use_error_term:
            gens = greedy_decode(model, prompts, max_new, batch_size=batch_size)
        else:
            dev = sae.W_dec.device

            def recon(h):
                return sae.decode(sae.encode(h.to(dev, sae.dtype))).to(h.device, h.dtype)

            def hooks(rows, last):
                return edit_hooks(sae.cfg.metadata.hook_name, recon, last, prefill_only=False)

            gens = greedy_decode(model, prompts, max_new, batch_size, hooks)
    else:
        ctx = spliced(model, sae, use_error_term) if sae is not None else nullcontext()
        with ctx:
            gens = greedy_decode(model, prompts, max_new, batch_size=batch_size)
    cache: dict[str, list[int]] = {}
    scores = []
    for answer, g in zip(answers, gens):
        if answer not in cache:
            cache[answer] = answer_tokens(model, answer)
        scores.append(score_generation(model, g, answer, cache[answer]))
    keys = ("first_token", "exact", "lenient")

    def agg(rows):
        return {k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in keys} | {"n": len(rows)}

    concepts = list(names) if names is not None else list(dict.fromkeys(e.concept for e in items))
    per = {c: agg([s for s, e in zip(scores, items) if e.concept == c]) for c in concepts}
    return agg(scores) | {"per_concept": per}


# =============================================================================================
# CE / KL with the SAE spliced in
# =============================================================================================


@torch.no_grad()
def ce_kl(model, sae, texts: Sequence[str], batch_size: int = 32) -> dict[str, float]:
    """Next-token CE of the clean model, with the SAE reconstruction spliced in, and with the hook zero-ablated;
    `ce_loss_score` = (CE_abl − CE_sae) / (CE_abl − CE_clean) as SAELens; `kl_div` = KL(clean ‖ spliced) per token.

    Computed over real (unpadded) tokens of `texts`. SAELens' `get_recons_loss` needs an ActivationsStore, so this
    is the same computation written directly on the model.
    """
    hook = check_sae_fits(model, sae)
    seqs = tokenize(model, list(texts))
    tot = {"clean": 0.0, "sae": 0.0, "ablation": 0.0, "kl": 0.0}
    n_tok = 0
    for start in range(0, len(seqs), batch_size):
        toks, lengths = pad_right(seqs[start : start + batch_size])
        toks = toks.to(model.cfg.device)
        mask = (torch.arange(toks.shape[1] - 1)[None] < (lengths[:, None] - 1)).to(toks.device)

        def ce(logits, toks=toks, mask=mask):
            lp = logits[:, :-1].log_softmax(-1)
            nll = -lp.gather(-1, toks[:, 1:, None])[..., 0]
            return float((nll * mask).sum()), lp

        c_clean, lp_clean = ce(model(toks))
        with spliced(model, sae, use_error_term=False):
            c_sae, lp_sae = ce(model(toks))
        c_abl, _ = ce(run_with_hooks(model, toks, [(hook, lambda x, hook: torch.zeros_like(x))]))
        kl = ((lp_clean.exp() * (lp_clean - lp_sae)).sum(-1) * mask).sum()
        tot["clean"] += c_clean
        tot["sae"] += c_sae
        tot["ablation"] += c_abl
        tot["kl"] += float(kl)
        n_tok += int(mask.sum())
    r = {k: v / max(n_tok, 1) for k, v in tot.items()}
    denom = r["ablation"] - r["clean"]
    return {
        "ce_loss_without_sae": r["clean"],
        "ce_loss_with_sae": r["sae"],
        "ce_loss_with_ablation": r["ablation"],
        "ce_loss_score": (r["ablation"] - r["sae"]) / denom if abs(denom) > 1e-12 else float("nan"),
        "kl_div": r["kl"],
        "n_tokens": n_tok,
    }
