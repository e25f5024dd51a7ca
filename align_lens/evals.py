"""Evaluation of aligned SAEs: binding, fragmentation, fidelity, spliced task accuracy, off-ontology silence.

Every function returns plain Python (floats, lists, dicts) so results can go straight into JSON.

Greedy decoding (`greedy_decode`) is shared with `align_lens.interventions`: it runs the model on
right-padded prompts, re-running the full sequence at each step (no KV cache), and lets a caller edit the
residual stream at one absolute position per row. The sequences here are short, so re-running is cheap and
the edit is applied identically on every pass, which equals a prefill-only edit with a KV cache.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np
import torch
from jaxtyping import Float, Int
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from align_lens.activations import check_sae_fits, pad_right, tokenize
from align_lens.ontology import Example, Ontology

# =============================================================================================
# binding
# =============================================================================================


def _as_long(labels) -> Tensor:
    return labels.long().cpu() if isinstance(labels, Tensor) else torch.as_tensor(labels, dtype=torch.long)


def hungarian(score: np.ndarray, maximize: bool = True) -> list[int]:
    """Column assigned to each row of a (rows ≤ cols) score matrix by `scipy.optimize.linear_sum_assignment`."""
    score = np.asarray(score, dtype=float)
    if score.shape[0] > score.shape[1]:
        raise ValueError(f"need at least as many columns as rows for a matching, got {score.shape}")
    rows, cols = linear_sum_assignment(np.nan_to_num(score, nan=-np.inf if maximize else np.inf), maximize=maximize)
    out = [-1] * score.shape[0]
    for r, c in zip(rows, cols):
        out[int(r)] = int(c)
    return out


@torch.no_grad()
def encode_in_chunks(sae, acts: Float[Tensor, "n d_in"], concepts_only: bool = False,
                     batch_size: int = 4096) -> Float[Tensor, "n k"]:  # fmt: skip
    """`sae.encode` (or `concept_acts`) over `acts` in chunks on the SAE's device; float32 on the CPU."""
    dev = sae.W_dec.device
    fn = sae.concept_acts if concepts_only else sae.encode
    return torch.cat([fn(c.to(dev, sae.dtype)).float().cpu() for c in acts.split(batch_size)])


@torch.no_grad()
def binding_metrics(
    concept_acts: Float[Tensor, "n k"],
    labels: Int[Tensor, " n"],
    names: Sequence[str],
    templates: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Binding of concepts to slots (or to any k ≥ c candidate latents, one column each).

    Returns
      accuracy            argmax over the k columns == the label (column c is concept c's slot); this is the
                          AlignSAE slot accuracy, and with balanced classes equals the paper's "diagonal"
      diagonal            macro average of per-concept recall (the paper's trace/c of the column-normalised confusion)
      hungarian_accuracy  accuracy after matching concepts to columns by `linear_sum_assignment` on the
                          concept × column argmax-count matrix (permutation-invariant; ≥ accuracy)
      hungarian_assignment  matched column of each concept
      confusion           c × k counts, rows = true concept, cols = argmax column
      confusion_normalized  rows divided by their counts
      mean_activation     c × k mean column activation per true concept
      per_concept         {name: {accuracy, n, mean_own, margin}}; margin = own column minus best other column
      per_template        {template: accuracy} when `templates` is given
      n
    """
    z = concept_acts.detach().float().cpu()
    y = _as_long(labels)
    names = list(names)
    c, k = len(names), z.shape[1]
    if z.ndim != 2 or len(z) != len(y):
        raise ValueError(f"concept_acts must be [n, k] with one label per row, got {tuple(z.shape)} and {len(y)} labels")
    if k < c:
        raise ValueError(f"{k} columns cannot bind {c} concepts")
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"labels must be in 0..{c - 1}")
    pred = z.argmax(-1)
    conf = torch.zeros(c, k, dtype=torch.long)
    conf.index_put_((y, pred), torch.ones_like(y), accumulate=True)
    counts = conf.sum(1).clamp_min(1)
    mean_act = torch.stack([z[y == i].mean(0) if (y == i).any() else torch.full((k,), float("nan")) for i in range(c)])
    assign = hungarian(conf.numpy())
    matched = torch.tensor(assign)[y]
    own = z[torch.arange(len(y)), y] if len(y) else z.new_zeros(0)
    others = z[:, :c].clone() if len(y) else z.new_zeros(0, c)
    if len(y):
        others[torch.arange(len(y)), y] = -float("inf")
    margin = own - others.max(-1).values if len(y) else own
    per_concept = {}
    for i, name in enumerate(names):
        m = y == i
        per_concept[name] = {
            "accuracy": float((pred[m] == i).float().mean()) if m.any() else float("nan"),
            "n": int(m.sum()),
            "mean_own": float(own[m].mean()) if m.any() else float("nan"),
            "margin": float(margin[m].mean()) if m.any() else float("nan"),
        }
    out = {
        "accuracy": float((pred == y).float().mean()) if len(y) else float("nan"),
        "diagonal": float(np.nanmean([v["accuracy"] for v in per_concept.values()])),
        "hungarian_accuracy": float((pred == matched).float().mean()) if len(y) else float("nan"),
        "hungarian_assignment": assign,
        "confusion": conf.tolist(),
        "confusion_normalized": (conf.float() / counts[:, None]).tolist(),
        "mean_activation": mean_act.tolist(),
        "per_concept": per_concept,
        "names": names,
        "n": len(y),
    }
    if templates is not None:
        if len(templates) != len(y):
            raise ValueError(f"{len(templates)} templates for {len(y)} rows")
        hit = (pred == y).tolist()
        groups: dict[str, list[bool]] = {}
        for t, h in zip(templates, hit):
            groups.setdefault(str(t), []).append(h)
        out["per_template"] = {t: float(np.mean(h)) for t, h in sorted(groups.items())}
    return out


# =============================================================================================
# fragmentation
# =============================================================================================


def _eff(mass: Tensor) -> tuple[float, float, int]:
    total = mass.sum()
    if total <= 0:
        return float("nan"), float("nan"), -1
    p = mass / total
    nz = p[p > 0]
    entropy = float(-(nz * nz.log()).sum())
    return math.exp(entropy), float(p.max()), int(p.argmax())


@torch.no_grad()
def fragmentation(
    acts: Float[Tensor, "n d_sae"],
    labels: Int[Tensor, " n"],
    slot_indices: Sequence[int],
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """How spread out each concept is over latents (AlignSAE's EffFeat / Top1C).

    For concept c, the mass of latent j is the mean positive activation of j over c's examples.
    EffFeat = exp(entropy of the normalised mass) (1 = one latent carries everything), top1 = the largest share.
    Both are reported over the concept's candidate latents (`slot_indices`, one per concept: the AlignSAE
    comparison) and over all latents (the fair comparison between SAEs).

    Returns {"per_concept": {name: {eff_feat_slots, top1_slots, top1_slot_is_own, eff_feat_all, top1_all,
    top1_latent_all}}, "mean": {same keys, averaged}}.
    """
    a = acts.detach().float().cpu().clamp_min(0)
    y = _as_long(labels)
    slots = list(slot_indices)
    names = list(names) if names is not None else [str(i) for i in range(len(slots))]
    per = {}
    for i, name in enumerate(names):
        m = y == i
        mass = a[m].mean(0) if m.any() else a.new_zeros(a.shape[1])
        e_s, t_s, arg_s = _eff(mass[slots])
        e_a, t_a, arg_a = _eff(mass)
        per[name] = {
            "eff_feat_slots": e_s,
            "top1_slots": t_s,
            "top1_slot_is_own": arg_s == i,
            "eff_feat_all": e_a,
            "top1_all": t_a,
            "top1_latent_all": arg_a,
        }
    keys = ("eff_feat_slots", "top1_slots", "eff_feat_all", "top1_all")
    mean = {k: float(np.nanmean([v[k] for v in per.values()])) for k in keys}
    return {"per_concept": per, "mean": mean}


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
# greedy decoding with optional residual edits (shared with interventions)
# =============================================================================================

EditFn = Callable[[Tensor, Tensor], Tensor]  # (resid [b, d] at the edit positions, row index [b]) -> new resid


def stop_ids(model) -> set[int]:
    """Token ids that end an answer: eos plus any token containing a newline (never '.')."""
    tok = model.tokenizer
    ids: set[int] = set()
    if tok is None:
        return ids
    if tok.eos_token_id is not None:
        ids.add(int(tok.eos_token_id))
    for t, i in tok.get_vocab().items():
        if "\n" in t or "Ċ" in t:
            ids.add(int(i))
    return ids


@torch.no_grad()
def greedy_decode(
    model,
    prompts: Sequence[str] | Sequence[Tensor],
    max_new_tokens: int,
    hook_name: str | None = None,
    edit: EditFn | None = None,
    batch_size: int = 64,
    extra_hooks: Sequence | None = None,
) -> list[list[int]]:
    """Greedy continuation tokens of each prompt (stopped after eos/newline tokens, which are not returned).

    Prompts are right-padded and the full sequence is re-run at each step. When `edit` is given, the residual at
    `hook_name` at each prompt's last token is replaced by `edit(resid, rows)` on every pass (the same values
    each time, as with a prefill-only edit under a KV cache); `rows` are the indices of the batch rows in
    `prompts`, so the edit can depend on the row.
    """
    seqs = [p if isinstance(p, Tensor) else None for p in prompts]
    if any(s is None for s in seqs):
        seqs = tokenize(model, list(prompts))
    stops = stop_ids(model)
    pad = model.tokenizer.pad_token_id if model.tokenizer is not None and model.tokenizer.pad_token_id is not None else 0
    device = model.cfg.device
    n_ctx = model.cfg.n_ctx
    out: list[list[int]] = []
    for start in range(0, len(seqs), batch_size):
        chunk = seqs[start : start + batch_size]
        toks, lengths = pad_right(chunk, pad)
        b = len(chunk)
        room = min(max_new_tokens, n_ctx - int(lengths.max()))
        buf = torch.full((b, int(lengths.max()) + max(room, 0)), pad, dtype=torch.long)
        buf[:, : toks.shape[1]] = toks
        buf = buf.to(device)
        last = (lengths - 1).to(device)
        rows = torch.arange(start, start + b, device=device)
        done = torch.zeros(b, dtype=torch.bool, device=device)
        gen = [[] for _ in range(b)]
        hooks = list(extra_hooks or [])
        if edit is not None:
            if hook_name is None:
                raise ValueError("an edit needs hook_name")

            def hook_fn(x, hook, last=last, rows=rows):
                x = x.clone()
                ar = torch.arange(x.shape[0], device=x.device)
                x[ar, last] = edit(x[ar, last], rows).to(x.dtype)
                return x

            hooks.append((hook_name, hook_fn))
        ctx = model.hooks(fwd_hooks=hooks) if hooks else nullcontext()
        with ctx:
            for t in range(room):
                width = int(lengths.max()) + t
                logits = model(buf[:, :width])
                ar = torch.arange(b, device=device)
                nxt = logits[ar, last + t].argmax(-1)
                buf[ar, last + t + 1] = torch.where(done, torch.full_like(nxt, pad), nxt)
                for i in range(b):
                    if not done[i]:
                        tid = int(nxt[i])
                        if tid in stops:
                            done[i] = True
                        else:
                            gen[i].append(tid)
                if bool(done.all()):
                    break
        out += gen
    return out


def decode_tokens(model, ids: Sequence[int]) -> str:
    """Token ids → normalised answer text (whitespace collapsed, stripped)."""
    if not ids:
        return ""
    text = model.tokenizer.decode(list(ids), skip_special_tokens=True)
    return normalize(text)


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def answer_tokens(model, answer: str) -> list[int]:
    """Tokens of an answer as the model writes it after the prompt (leading space, no BOS)."""
    return model.to_tokens(" " + answer.strip(), prepend_bos=False)[0].tolist()


def lenient_match(generated: str, gold: str) -> bool:
    """The official AlignSAE `compare_answers`: cut at the first '.' or newline, then case-insensitive
    substring match in either direction; empty generations are wrong (their date parsing is not reproduced)."""
    gen = str(generated).split("\n")[0].split(".")[0].strip().lower()
    ref = str(gold).strip().lower()
    if not gen or not ref:
        return False
    return ref in gen or gen in ref


def score_generation(model, ids: Sequence[int], gold: str, gold_ids: Sequence[int] | None = None) -> dict[str, bool]:
    """The three scorers: exact first token, exact full answer (after eos/newline cut), lenient substring."""
    gold_ids = list(gold_ids) if gold_ids is not None else answer_tokens(model, gold)
    text = decode_tokens(model, ids)
    return {
        "first_token": bool(ids) and int(ids[0]) == int(gold_ids[0]),
        "exact": text == normalize(gold),
        "lenient": lenient_match(text, gold),
    }


# =============================================================================================
# task accuracy with the SAE spliced in
# =============================================================================================


@contextmanager
def spliced(model, sae, use_error_term: bool = False):
    """Splice `sae` into `model` at its hook for the duration of the block (restores what was there)."""
    check_sae_fits(model, sae)
    with model.saes(saes=[sae], use_error_term=use_error_term):
        yield model
    if hasattr(sae, "setup"):
        sae.setup()  # restore the SAE's short hook names


def _examples(examples) -> list[Example]:
    if isinstance(examples, Ontology):
        return examples.select()
    return list(examples)


def _max_answer_len(model, answers: Sequence[str]) -> int:
    return max((len(answer_tokens(model, a)) for a in set(answers)), default=1)


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
    items = [e for e in _examples(examples) if e.answer is not None]
    if not items:
        raise ValueError("no examples with answers")
    max_new = max_new_tokens or _max_answer_len(model, [e.answer for e in items]) + 1
    prompts = [e.prompt for e in items]
    if positions not in ("all", "last"):
        raise ValueError(f"positions must be 'all' or 'last', got {positions!r}")
    if sae is not None and positions == "last":
        if use_error_term:
            gens = greedy_decode(model, prompts, max_new, batch_size=batch_size)
        else:
            dev = sae.W_dec.device

            def recon(h, rows):
                return sae.decode(sae.encode(h.to(dev, sae.dtype))).to(h.device, h.dtype)

            gens = greedy_decode(model, prompts, max_new, sae.cfg.metadata.hook_name, recon, batch_size)
    else:
        ctx = spliced(model, sae, use_error_term) if sae is not None else nullcontext()
        with ctx:
            gens = greedy_decode(model, prompts, max_new, batch_size=batch_size)
    cache: dict[str, list[int]] = {}
    scores = []
    for e, g in zip(items, gens):
        if e.answer not in cache:
            cache[e.answer] = answer_tokens(model, e.answer)
        scores.append(score_generation(model, g, e.answer, cache[e.answer]))
    keys = ("first_token", "exact", "lenient")

    def agg(rows):
        return {k: float(np.mean([r[k] for r in rows])) if rows else float("nan") for k in keys} | {"n": len(rows)}

    concepts = list(names) if names is not None else list(dict.fromkeys(e.concept for e in items))
    per = {c: agg([s for s, e in zip(scores, items) if e.concept == c]) for c in concepts}
    return agg(scores) | {"per_concept": per}


# =============================================================================================
# off-ontology silence
# =============================================================================================


@torch.no_grad()
def off_ontology_silence(sae, acts_without_concepts: Float[Tensor, "n d_in"], threshold: float = 0.0,
                         batch_size: int = 4096) -> dict[str, Any]:  # fmt: skip
    """Do the concept slots stay quiet on activations that carry no concept (e.g. every token of ordinary text)?

    Returns per slot {fire_rate (fraction > threshold), mean, max, mean_relative (mean / concept scale)} and the
    averages over slots ("mean_fire_rate", "max_activation").
    """
    names = list(sae.cfg.concept_names)
    scales = list(getattr(sae.cfg, "concept_scales", [1.0] * len(names)))
    z = encode_in_chunks(sae, acts_without_concepts, concepts_only=True, batch_size=batch_size)
    per = {}
    for i, n in enumerate(names):
        col = z[:, i]
        per[n] = {
            "fire_rate": float((col > threshold).float().mean()),
            "mean": float(col.mean()),
            "max": float(col.max()),
            "mean_relative": float(col.mean()) / (scales[i] or 1.0),
        }
    return {
        "per_concept": per,
        "mean_fire_rate": float(np.mean([v["fire_rate"] for v in per.values()])),
        "max_activation": float(z.max()) if z.numel() else float("nan"),
        "n": len(z),
    }


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

        def ce(logits):
            lp = logits[:, :-1].log_softmax(-1)
            nll = -lp.gather(-1, toks[:, 1:, None])[..., 0]
            return float((nll * mask).sum()), lp

        c_clean, lp_clean = ce(model(toks))
        with spliced(model, sae, use_error_term=False):
            c_sae, lp_sae = ce(model(toks))
        c_abl, _ = ce(model.run_with_hooks(toks, fwd_hooks=[(hook, lambda x, hook: torch.zeros_like(x))]))
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
