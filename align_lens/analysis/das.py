"""DAS baseline (distributed alignment search): a learned low-rank orthogonal subspace of the residual at one
hook that carries the *relation* asked, trained by interchange interventions through TransformerLens hooks.

Training (Geiger et al.'s interchange-intervention training): a base prompt asks relation A about entity e, a
source prompt asks relation B about another entity; the base's residual at the hook, last prompt token, gets the
source's subspace component, h ← h + R Rᵀ(h_src − h) (R: d × rank, orthonormal columns via
`torch.nn.utils.parametrizations.orthogonal`), and the frozen model must then answer e's B value (teacher-forced
cross-entropy of the answer tokens). By default one subspace is shared by the relations (they are values of one
causal variable); with `DASConfig.per_concept` each relation owns a rank-`rank` subspace R_c and a swap A → B acts
in the span of R_A and R_B (orthonormalised), so it can both remove A and write B. The editor (`DASEditor`) uses B's
class mean as the source, so it runs in the same swap evaluation as every other method:
h ← h + α Q Qᵀ(mean_B − h), Q = R or orth(R_A, R_B) (unit "subspace_mean": α = 1 puts B's mean subspace component
in place of h's).
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor
from torch.nn.utils.parametrizations import orthogonal

from align_lens.interventions.editors import Editor
from align_lens.interventions.trials import answer_lookup
from align_lens.ontology import Example
from align_lens.training.interchange import CounterfactualBatch, frozen, patched_answer_loss, swap_pairs


@dataclass
class DASConfig:
    rank: int = 8  # dimension of the learned subspace (of each relation's, with per_concept)
    per_concept: bool = False  # one subspace per concept; a swap A → B acts in span(R_A, R_B)
    steps: int = 300
    batch_size: int = 64
    lr: float = 1e-2
    max_pairs: int | None = None  # a seeded sample of this many swap pairs to train on (None: every pair)
    span: bool = False  # the interchange also over the answer tokens (the swaps' `span` edit)
    seed: int = 0


def _pair_bases(bases: Float[Tensor, "c rank d"], src: Tensor, tgt: Tensor) -> Float[Tensor, "b d k"]:
    """Orthonormal columns spanning R_src and R_tgt, one basis per row (differentiable)."""
    return torch.linalg.qr(torch.cat([bases[src], bases[tgt]], dim=1).transpose(1, 2)).Q


def subspace_interchange(
    h: Float[Tensor, "b d"], h_src: Float[Tensor, "b d"], basis: Tensor, src: Tensor, tgt: Tensor
) -> Float[Tensor, "b d"]:
    """h + Q Qᵀ(h_src − h): h's component in the subspace replaced by h_src's. `basis` is [rank, d] (shared) or
    [c, rank, d] (per concept; Q spans the rows' source and target subspaces)."""
    diff = h_src - h
    if basis.dim() == 2:
        return h + (diff @ basis.T) @ basis
    q = _pair_bases(basis, src, tgt)
    return h + torch.einsum("bdk,bk->bd", q, torch.einsum("bdk,bd->bk", q, diff))


class DASEditor(Editor):
    """h ← h + α Q Qᵀ(mean_B − h): the relation subspace of h replaced (α = 1) by target B's class mean's. `basis`
    is [rank, d] (one shared subspace, Q = basis) or [c, rank, d] (per concept, Q = orth(R_A, R_B))."""

    unit = "subspace_mean"
    mode = "das"

    def __init__(self, basis: Float[Tensor, "..."], means: Float[Tensor, "c d"], names: Sequence[str], hook_name):
        if basis.dim() == 3 and len(basis) != len(means):
            raise ValueError(f"{len(basis)} per-concept bases for {len(means)} concepts")
        self.basis = basis.detach().float()
        self.means = means.detach().float()
        self.names = list(names)
        self.hook_name = hook_name

    @torch.no_grad()
    def __call__(self, h: Tensor, src: Tensor, tgt: Tensor, alpha: float) -> Tensor:
        src, tgt = src.to(h.device), tgt.to(h.device)
        x = h.float()
        moved = subspace_interchange(x, self.means.to(h.device)[tgt], self.basis.to(h.device), src, tgt)
        return (x + alpha * (moved - x)).to(h.dtype)


def train_das(
    model,
    examples: Sequence[Example],
    acts: Float[Tensor, "n d"],
    names: Sequence[str],
    hook_name: str,
    config: DASConfig | None = None,
) -> tuple[DASEditor, dict]:
    """Learn the relation subspace on `examples` (training prompts with entities and answers; `acts` are their
    last-token activations at `hook_name`, same order). Returns (editor, {"loss": per-step losses, "seconds"})."""
    config = config or DASConfig()
    names = list(names)
    if len(acts) != len(examples):
        raise ValueError(f"{len(acts)} activations for {len(examples)} examples; give one per example")
    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    lookup = answer_lookup(examples)
    pairs = swap_pairs(examples, names, lookup)
    if not pairs:
        raise ValueError("no swap pairs: DAS needs examples with entities, answers and at least two concepts")
    if config.max_pairs is not None and len(pairs) > config.max_pairs:
        pairs = rng.sample(pairs, config.max_pairs)
    by_concept: dict[int, list[int]] = {}
    for i, e in enumerate(examples):
        if e.concept in names:
            by_concept.setdefault(names.index(e.concept), []).append(i)
    batch = CounterfactualBatch(model, [examples[i].prompt for i, *_ in pairs], [g for *_, g in pairs])
    dev = model.cfg.device
    acts = acts.to(dev).float()
    d = acts.shape[1]
    if not 1 <= config.rank <= d:
        raise ValueError(f"rank must be in 1..{d}, got {config.rank}")
    n_bases = len(names) if config.per_concept else 1
    rots = torch.nn.ModuleList(orthogonal(torch.nn.Linear(d, config.rank, bias=False)) for _ in range(n_bases))
    rots = rots.to(dev)
    opt = torch.optim.Adam(rots.parameters(), lr=config.lr)

    def bases() -> Tensor:  # [rank, d] shared, or [c, rank, d]
        w = torch.stack([r.weight for r in rots])  # pyright: ignore[reportArgumentType]  (parametrized tensors)
        return w if config.per_concept else w[0]

    losses, t0 = [], time.perf_counter()
    with frozen(model):
        for _ in range(config.steps):
            pick = rng.sample(range(len(pairs)), min(config.batch_size, len(pairs)))
            toks, last, targets, _ = batch.rows(pick, dev)
            h_src = acts[[rng.choice(by_concept[pairs[i][2]]) for i in pick]]
            src = torch.tensor([pairs[i][1] for i in pick], device=dev)
            tgt = torch.tensor([pairs[i][2] for i in pick], device=dev)

            def edit(h, h_src=h_src, src=src, tgt=tgt):
                return subspace_interchange(h, h_src, bases(), src, tgt)

            loss = patched_answer_loss(model, hook_name, toks, last, targets, edit, config.span)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
    labels = torch.tensor([names.index(e.concept) for e in examples], device=dev)
    means = torch.stack([acts[labels == c].mean(0) for c in range(len(names))])
    with torch.no_grad():
        editor = DASEditor(bases().cpu(), means.cpu(), names, hook_name)
    return editor, {"loss": losses, "seconds": time.perf_counter() - t0}
