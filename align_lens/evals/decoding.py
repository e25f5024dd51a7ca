"""The one greedy decoder (under caller-given forward hooks), and answer scoring (shared by evaluation and swaps).

The model runs on right-padded prompts and re-runs the full sequence at each step (no KV cache); edits come in
as forward hooks (`interventions.swaps.edit_hooks` / `swap_hooks`, at absolute per-row positions). Sequences are
short, so re-running is cheap and the edit is applied identically on every pass, which equals a prefill-only edit
with a KV cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from align_lens import adapter
from align_lens.adapter import answer_tokens, check_context, decode_text, pad_id, pad_right, stop_ids, tokenize

# (rows of the batch in the prompts [b], last prompt position of each row [b]) -> forward hooks for that batch
HookFactory = Callable[[Tensor, Tensor], Sequence]


SCORERS = ("first_token", "exact", "lenient")


@torch.no_grad()
def greedy_decode(
    model,
    prompts: Sequence[str] | Sequence[Tensor],
    max_new_tokens: int,
    batch_size: int = 64,
    fwd_hooks: HookFactory | Sequence | None = None,
) -> list[list[int]]:
    """Greedy continuation tokens of each prompt (stopped after eos/newline tokens, which are not returned).

    Prompts are right-padded and the full sequence is re-run at each step. `fwd_hooks` are TransformerLens
    forward hooks held on every pass: a list (the same for every batch) or a function `(rows, last) -> hooks`
    called once per batch with the indices of its rows in `prompts` and each row's last prompt position
    (absolute), so a hook can edit each row differently, e.g. `swap_hooks(ed, src[rows], tgt[rows], α,
    position=last, prefill_only=False)`: every pass re-runs the prompt, so the edit is the same each time, as
    with a prefill-only edit under a KV cache.
    """
    seqs = [p if isinstance(p, Tensor) else tokenize(model, [p], room=1)[0] for p in prompts]
    check_context(model, seqs, room=1)
    stops = stop_ids(model)
    pad = pad_id(model)
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
        done = torch.zeros(b, dtype=torch.bool, device=device)
        gen = [[] for _ in range(b)]
        fwd = fwd_hooks(torch.arange(start, start + b), last) if callable(fwd_hooks) else list(fwd_hooks or [])
        with adapter.hooks(model, fwd):
            for t in range(room):
                width = int(lengths.max()) + t
                ar = torch.arange(b, device=device)
                nxt = adapter.logits_at(model, buf[:, :width], last + t).argmax(-1)
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
    return normalize(decode_text(model, ids))


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", str(text)).strip()


def max_answer_len(model, answers: Sequence[str]) -> int:
    """The longest answer in tokens (1 when there is none)."""
    return max((len(answer_tokens(model, a)) for a in set(answers)), default=1)


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
