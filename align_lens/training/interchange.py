"""Interchange-intervention training: the frozen model, run with an edit at one hook and position, must produce
the counterfactual answer.

`patched_answer_loss` is the shared piece (teacher-forced cross-entropy of the answer tokens after the prompt,
with a differentiable edit of the prompt's last-token residual at the hook); DAS (`analysis.das`) and the optional
Stage-2 term (`InterchangeObjective`, `AlignConfig.interchange_weight`) both train through it.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import torch
from jaxtyping import Float, Int
from torch import Tensor

from align_lens.adapter import EditSite, answer_tokens, pad_right, run_with_hooks, tokenize
from align_lens.ontology import Example
from align_lens.saes.aligned import AlignedSAE


class CounterfactualBatch:
    """Prompts + answers tokenised once for teacher forcing: row i is prompt_i followed by answer_i[:-1]."""

    def __init__(self, model, prompts: Sequence[str], answers: Sequence[str]):
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        self.prompt_toks = tokenize(model, prompts)
        cache: dict[str, list[int]] = {}
        self.answer_toks = [cache.setdefault(a, answer_tokens(model, a)) for a in answers]

    def __len__(self) -> int:
        return len(self.prompt_toks)

    def rows(self, idx: Sequence[int], device) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """(tokens [b, s], last prompt position [b], target ids [b, s] (-100 where not an answer token))."""
        seqs, last, targets = [], [], []
        for i in idx:
            p, a = self.prompt_toks[i], torch.tensor(self.answer_toks[i])
            seqs.append(torch.cat([p, a[:-1]]))
            last.append(len(p) - 1)
            t = torch.full((len(p) + len(a) - 1,), -100)
            t[len(p) - 1 :] = a
            targets.append(t)
        toks, lengths = pad_right(seqs)
        tgt = torch.full(toks.shape, -100)
        for r, t in enumerate(targets):
            tgt[r, : len(t)] = t
        return toks.to(device), torch.tensor(last, device=device), tgt.to(device), lengths


def patched_answer_loss(
    model,
    hook_name: str,
    toks: Int[Tensor, "b s"],
    last: Int[Tensor, " b"],
    targets: Int[Tensor, "b s"],
    edit: Callable[[Float[Tensor, "b d"]], Float[Tensor, "b d"]],
    span: bool = False,
) -> Tensor:
    """Mean cross-entropy of the answer tokens with `edit` applied to the residual at `hook_name`, at each row's
    last prompt token (with `span`, there and at every later position: the answer tokens fed back, as the swap
    hooks' `span` edit does while generating). Gradients flow into whatever `edit` closes over; the model's
    weights are not updated here (freeze them, see `frozen`)."""
    ar = torch.arange(len(toks), device=toks.device)

    def hook_fn(x, hook):
        if span:  # edit only from the earliest last prompt token on; each row keeps its own prompt unedited
            start = int(last.min())
            positions = torch.arange(start, x.shape[1], device=x.device)
            edited = torch.stack([edit(x[:, i]) for i in positions.tolist()], dim=1).to(x.dtype)
            later = (positions[None, :] >= last[:, None])[..., None]
            return torch.cat([x[:, :start], torch.where(later, edited, x[:, start:])], dim=1)
        x = x.clone()
        x[ar, last] = edit(x[ar, last]).to(x.dtype)
        return x

    logits = run_with_hooks(model, toks, [(EditSite(hook_name), hook_fn)])
    return torch.nn.functional.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100)


class frozen:
    """Context manager: the model's parameters do not require grad inside (restored after)."""

    def __init__(self, model):
        self.model = model

    def __enter__(self):
        self.saved = [p.requires_grad for p in self.model.parameters()]
        self.model.requires_grad_(False)
        return self.model

    def __exit__(self, *exc):
        for p, r in zip(self.model.parameters(), self.saved):
            p.requires_grad_(r)


def swap_pairs(
    examples: Sequence[Example], names: Sequence[str], lookup: dict[tuple[str, str], str]
) -> list[tuple[int, int, int, str]]:
    """Every (example index, source concept, target concept, gold) with a known, different target answer."""
    out = []
    for i, e in enumerate(examples):
        if e.entity is None or e.answer is None or e.concept not in names:
            continue
        a = names.index(e.concept)
        for b, nb in enumerate(names):
            gold = lookup.get((e.entity, nb))
            if b != a and gold is not None and gold.strip() != e.answer.strip():
                out.append((i, a, b, gold))
    return out


class InterchangeObjective:
    """Stage-2 causal term: with the delta slot edit z'_A = 0, z'_B = 1 (the value `mse_onehot` binding pins a slot
    at) applied by the SAE being trained (at the last prompt token, or with `span` over the answer too), the frozen
    model must answer the entity's B value.

    `examples` are the labelled training examples (same order as the Stage-2 activations); each call draws
    `batch_size` random swap trials among them and returns the mean answer cross-entropy (differentiable in the
    SAE's parameters).
    """

    def __init__(
        self,
        model,
        hook_name: str,
        examples: Sequence[Example],
        names: Sequence[str],
        batch_size: int,
        seed: int,
        span: bool = False,
    ):
        from align_lens.interventions.trials import answer_lookup

        names = list(names)
        self.model, self.hook_name, self.batch_size, self.span = model, hook_name, batch_size, span
        self.pairs = swap_pairs(examples, names, answer_lookup(examples))
        if not self.pairs:
            raise ValueError("interchange_weight > 0 needs training examples with entities and answers")
        self.batch = CounterfactualBatch(
            model, [examples[i].prompt for i, *_ in self.pairs], [g for *_, g in self.pairs]
        )
        self.rng = random.Random(seed)

    def __call__(self, aligned: AlignedSAE) -> Tensor:
        pick = self.rng.sample(range(len(self.pairs)), min(self.batch_size, len(self.pairs)))
        dev = aligned.W_dec.device
        toks, last, targets, _ = self.batch.rows(pick, dev)
        nf = aligned.cfg.n_free
        src = torch.tensor([self.pairs[i][1] for i in pick], device=dev) + nf
        tgt = torch.tensor([self.pairs[i][2] for i in pick], device=dev) + nf
        ar = torch.arange(len(pick), device=dev)

        def edit(h):
            z = aligned.encode(h.to(aligned.dtype))
            delta = torch.zeros_like(z)
            delta[ar, src] = -z[ar, src]
            delta[ar, tgt] = 1.0 - z[ar, tgt]
            return h + delta @ aligned.W_dec

        with frozen(self.model):
            return patched_answer_loss(self.model, self.hook_name, toks, last, targets, edit, self.span)
