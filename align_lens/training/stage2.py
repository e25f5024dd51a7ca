"""Stage 2 of AlignSAE: post-train a pretrained SAE so each ontology concept owns one latent."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.activations.gather import check_activations, gather_activations
from align_lens.ontology import Ontology
from align_lens.saes.aligned import AlignedSAE, aligned_from_sae
from align_lens.training import losses

TERMS = ("reconstruction", "sparsity", "binding", "decorrelation", "value", "silence")


@dataclass
class AlignConfig:
    """Everything Stage 2 needs besides the SAE and the ontology. Weights of 0 disable a term."""

    hook_name: str | None = None  # default: sae.cfg.metadata.hook_name
    position: str | int = "last"  # token whose activation carries the concept
    binding: Literal["ce", "mse_onehot"] = "mse_onehot"  # measured better for swaps than "ce" (docs/results.md)
    reconstruction_weight: float = 1.0
    sparsity_weight: float | None = None  # None: the SAE's own training coefficient, else 1.0
    binding_weight: float = 1.0
    decorrelation_weight: float = 0.01
    value_weight: float = 0.0
    silence_weight: float = 0.3
    init: Literal["lda", "diffmean", "random"] = "lda"
    train_free: bool = True  # False: freeze the pretrained dictionary, train only the slots
    epochs: int = 20
    steps: int | None = None  # overrides epochs
    batch_size: int = 256
    unlabelled_batch_size: int = 256
    lr: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    warmup_steps: int = 50
    weight_decay: float = 0.0
    patience: int | None = 5  # epochs without 0.1% improvement before stopping; None: never
    seed: int = 0
    device: str = "cpu"
    dtype: str = "float32"
    gather_batch_size: int = 128
    progress: bool = True
    checkpoint_dir: str | None = None  # save after every epoch; a rerun with the same settings resumes


@dataclass
class AlignHistory:
    """Per-step loss terms (unweighted) and the weighted total. Reconstruction and sparsity are
    divided by the activation variance (reconstruction is then the fraction of variance unexplained)."""

    steps: list[dict[str, float]] = field(default_factory=list)
    stopped_early: bool = False

    def series(self, term: str) -> list[float]:
        return [s[term] for s in self.steps]

    def plot(self):
        """A plotly figure of every loss term against the step (log scale)."""
        import plotly.graph_objects as go

        fig = go.Figure()
        for term in ("total", *TERMS):
            ys = self.series(term)
            if any(y != 0 for y in ys):
                fig.add_scatter(y=ys, name=term, mode="lines")
        fig.update_layout(title="Stage-2 losses", xaxis_title="step", yaxis_title="loss", yaxis_type="log")
        return fig


# ---- data -----------------------------------------------------------------------------------
def _answer_targets(ontology: Ontology, model) -> tuple[Int[Tensor, " n"], list[str]]:
    """Index of each train example's answer first token (by the model's tokenizer when given)."""
    firsts = []
    for e in ontology.select("train"):
        if e.answer is None:
            firsts.append(None)
        elif model is not None:
            firsts.append(model.to_str_tokens(" " + e.answer.strip(), prepend_bos=False)[0].strip())
        else:
            firsts.append(e.answer.split()[0])
    vocab = sorted({a for a in firsts if a is not None})
    lookup = {a: i for i, a in enumerate(vocab)}
    return torch.tensor([lookup.get(a, -1) if a is not None else -1 for a in firsts]), vocab


# ---- initialisation ------------------------------------------------------------------------
@torch.no_grad()
def init_concept_slots(aligned: AlignedSAE, acts: Float[Tensor, "n d"], labels: Int[Tensor, " n"], how: str) -> None:
    """Point each slot at its concept.

    "lda" (default): encoder direction Σ⁻¹(μ_c − μ̄) with Σ the pooled within-concept covariance
    (ridge 1e-3·tr Σ/d); "diffmean": direction μ_c − μ̄. Either way the column is scaled so the
    concept's own examples read ≈1 and the others ≈-1 before the ReLU, and the decoder row is
    μ_c − μ̄ (what the concept adds on average). "random": small random slots.
    """
    nf, nc, d = aligned.cfg.n_free, aligned.cfg.n_concepts, aligned.cfg.d_in
    if how == "random":
        aligned.W_enc[:, nf:] = torch.randn_like(aligned.W_enc[:, nf:]) * d**-0.5
        aligned.W_dec[nf:] = torch.randn_like(aligned.W_dec[nf:]) * 0.01
        return
    if how not in ("lda", "diffmean"):
        raise ValueError(f"init must be 'lda', 'diffmean' or 'random', got {how!r}")
    sae_in = acts - aligned.b_dec * aligned.cfg.apply_b_dec_to_input
    means = torch.stack([acts[labels == c].mean(0) for c in range(nc)])
    diffs = means - means.mean(0)
    directions = diffs
    if how == "lda":
        centred = (acts - means[labels]).double()
        cov = centred.T @ centred / len(acts)
        cov += torch.eye(d, dtype=cov.dtype, device=cov.device) * (1e-3 * cov.trace() / d).clamp_min(1e-8)
        directions = torch.linalg.solve(cov, diffs.double().T).T.to(acts.dtype)
    for c in range(nc):
        u = directions[c] / directions[c].norm().clamp_min(1e-8)
        p = sae_in @ u
        on, off = p[labels == c].mean(), p[labels != c].mean()
        gap = (on - off).clamp_min(1e-6)
        aligned.W_enc[:, nf + c] = 2 * u / gap
        aligned.b_enc[nf + c] = -(on + off) / gap
        aligned.W_dec[nf + c] = diffs[c]


def _sparsity_weight(sae: SAE, config: AlignConfig) -> float:
    if config.sparsity_weight is not None:
        return config.sparsity_weight
    details = (sae.cfg.metadata.training_architecture_details or {}) if sae.cfg.metadata else {}
    own = getattr(sae.cfg, "l1_coefficient", None) or getattr(sae.cfg, "l0_coefficient", None)
    return float(own or details.get("l1_coefficient") or details.get("l0_coefficient") or 1.0)


def _freeze_pretrained(aligned: AlignedSAE) -> list:
    """Keep the free dictionary fixed: mask the gradients of its encoder columns and decoder rows.
    Returns the hook handles to remove after training."""
    nf = aligned.cfg.n_free
    col = torch.zeros(aligned.cfg.d_sae, dtype=aligned.dtype, device=aligned.device)
    col[nf:] = 1
    aligned.b_dec.requires_grad_(False)
    if aligned.cfg.base_architecture == "jumprelu":
        aligned.threshold.requires_grad_(False)
    return [
        aligned.W_enc.register_hook(lambda g: g * col),
        aligned.b_enc.register_hook(lambda g: g * col),
        aligned.W_dec.register_hook(lambda g: g * col[:, None]),
    ]


def _schedule(config: AlignConfig, total: int) -> Callable[[int], float]:
    def factor(step: int) -> float:
        if step < config.warmup_steps:
            return (step + 1) / config.warmup_steps
        if config.lr_schedule == "constant":
            return 1.0
        t = (step - config.warmup_steps) / max(1, total - config.warmup_steps)
        return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return factor


# ---- checkpoints ----------------------------------------------------------------------------
CHECKPOINT = "align_checkpoint.pt"


def _settings(config: AlignConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint_dir")}


def _save_checkpoint(path: Path, config, modules: dict, gen, history, step: int, best: float, stale: int) -> None:
    """Everything needed to continue after this epoch, written atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: m.state_dict() for name, m in modules.items()}
    state |= {
        "settings": _settings(config),
        "generator": gen.get_state(),
        "history": history.steps,
        "step": step,
        "best": best,
        "stale": stale,
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)


def _resume(path: Path, config, modules: dict, gen, history) -> tuple[int, float, int]:
    state = torch.load(path, weights_only=False)
    if state["settings"] != _settings(config):
        raise ValueError(
            f"{path} was written with other AlignConfig settings; delete it or use another checkpoint_dir."
        )
    for name, m in modules.items():
        m.load_state_dict(state[name])
    gen.set_state(state["generator"])
    history.steps = state["history"]
    return state["step"], state["best"], state["stale"]


# ---- Stage 2 --------------------------------------------------------------------------------
def stage2_terms(
    aligned: AlignedSAE,
    x: Float[Tensor, "b d_in"],
    labels: Int[Tensor, " n"],
    binding: str = "ce",
    variance: float = 1.0,
    heads: losses.ValueHeads | None = None,
    answers: Int[Tensor, " n"] | None = None,
    decorrelation: Callable[[Tensor, Tensor], Tensor] = losses.decorrelation_loss,
) -> dict[str, Tensor]:
    """Unweighted loss terms for one batch: the first len(labels) rows of `x` are labelled,
    the rest unlabelled."""
    n, nf = len(labels), aligned.cfg.n_free
    z, pre = aligned.encode_with_hidden_pre(x)
    x_hat = aligned.decode(z)
    zero = x.new_zeros(())
    return {
        "reconstruction": losses.reconstruction_loss(x, x_hat) / variance,
        "sparsity": aligned.free_sparsity_loss(z, pre) / variance,
        "binding": losses.binding_loss(pre[:n, nf:], labels, binding),
        "decorrelation": decorrelation(z[:n, nf:].detach(), z[:n, :nf]),
        "value": heads.loss(x_hat[:n], labels, answers) if heads is not None else zero,
        "silence": losses.silence_loss(z[n:, nf:]) if len(x) > n else zero,
    }


def align(
    sae: SAE,
    ontology: Ontology,
    model=None,
    activations: Float[Tensor, "n d_in"] | None = None,
    labels: Int[Tensor, " n"] | None = None,
    unlabelled: Float[Tensor, "m d_in"] | None = None,
    config: AlignConfig | None = None,
) -> AlignedSAE:
    """Post-train `sae` so that each concept of `ontology` owns a dedicated latent.

    Give either `model` (activations are gathered at the SAE's hook for the ontology's training
    prompts) or `activations` (+ `labels`, default: the ontology's training labels). `unlabelled`
    activations (e.g. every token of ordinary text) are mixed into each batch for reconstruction,
    sparsity, and slot silence. Returns a new AlignedSAE with `.history`; `sae` is not modified.
    """
    config = config or AlignConfig()
    if not ontology.select("train"):
        raise ValueError("the ontology has no training examples; add examples with split='train'.")
    hook = config.hook_name or (sae.cfg.metadata.hook_name if sae.cfg.metadata else None)
    if activations is None:
        if model is None:
            raise ValueError("give either model= (to gather activations) or activations=.")
        if hook is None:
            raise ValueError("the SAE has no cfg.metadata.hook_name; pass AlignConfig(hook_name=...).")
        activations = gather_activations(
            model, ontology.prompts("train"), hook, config.position, config.gather_batch_size, config.progress
        )
    labels = ontology.labels("train") if labels is None else labels
    if len(labels) != len(activations):
        raise ValueError(f"{len(activations)} activations but {len(labels)} labels; give one label per row.")
    d_in = sae.cfg.d_in
    acts = check_activations(activations, d_in, "activations").to(config.device, getattr(torch, config.dtype))
    labels = labels.to(config.device)
    extra = None
    if unlabelled is not None:
        extra = check_activations(unlabelled, d_in, "unlabelled activations").to(config.device, acts.dtype)

    torch.manual_seed(config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    aligned = aligned_from_sae(sae, ontology.names, device=config.device).to(dtype=acts.dtype)
    aligned.cfg.metadata.hook_name = hook
    init_concept_slots(aligned, acts, labels, config.init)
    frozen = [] if config.train_free else _freeze_pretrained(aligned)

    heads, answers = None, None
    if config.value_weight > 0:
        answers, vocab = _answer_targets(ontology, model)
        if not vocab:
            raise ValueError("value_weight > 0 needs examples with answers; set value_weight=0 or add answers.")
        heads = losses.ValueHeads(ontology.n_concepts, d_in, len(vocab)).to(config.device, acts.dtype)
        answers = answers.to(config.device)

    params = [p for p in aligned.parameters() if p.requires_grad]
    params += list(heads.parameters()) if heads is not None else []
    opt = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    per_epoch = math.ceil(len(acts) / config.batch_size) - (len(acts) % config.batch_size == 1)  # 1-row batches skipped
    total = config.steps or config.epochs * per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _schedule(config, total))
    weights = {
        "reconstruction": config.reconstruction_weight,
        "sparsity": _sparsity_weight(sae, config),
        "binding": config.binding_weight,
        "decorrelation": config.decorrelation_weight,
        "value": config.value_weight,
        "silence": config.silence_weight if extra is not None else 0.0,
    }
    # The base SAE's own objective (sum-of-squares MSE + its sparsity) is divided by the activation
    # variance, so it keeps its internal balance while the supervised terms get scale-free weights.
    variance = float((extra if extra is not None else acts).var(0).sum().clamp_min(1e-12))
    history = AlignHistory()
    best, stale, epoch_losses, step = math.inf, 0, [], 0
    modules = {"sae": aligned, "opt": opt, "sched": sched} | ({"heads": heads} if heads is not None else {})
    ckpt = Path(config.checkpoint_dir) / CHECKPOINT if config.checkpoint_dir else None
    if ckpt is not None and ckpt.exists():
        step, best, stale = _resume(ckpt, config, modules, gen, history)
        history.stopped_early = config.patience is not None and stale >= config.patience
    bar = tqdm(total=total, initial=step, desc="align (stage 2)", disable=not config.progress)
    aligned.train()
    while step < total and not history.stopped_early:
        order = torch.randperm(len(acts), generator=gen).to(config.device)
        for idx in order.split(config.batch_size):
            if step >= total:
                break
            if len(idx) < 2:
                continue
            x, y = acts[idx], labels[idx]
            if extra is not None:
                pick = torch.randint(len(extra), (config.unlabelled_batch_size,), generator=gen).to(config.device)
                x = torch.cat([x, extra[pick]])
            terms = stage2_terms(
                aligned, x, y, config.binding, variance, heads, answers[idx] if heads is not None else None
            )
            loss = sum(weights[k] * v for k, v in terms.items())
            if not torch.isfinite(loss):
                raise FloatingPointError(f"Stage-2 loss became {loss.item()} at step {step}; lower AlignConfig.lr.")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            record = {k: v.item() for k, v in terms.items()} | {"total": loss.item()}
            history.steps.append(record)
            epoch_losses.append(record["total"])
            step += 1
            bar.update()
            if step % 10 == 0:
                bar.set_postfix(
                    total=f"{record['total']:.3g}",
                    bind=f"{record['binding']:.3g}",
                    rec=f"{record['reconstruction']:.3g}",
                )
        mean = sum(epoch_losses) / max(1, len(epoch_losses))
        epoch_losses = []
        if mean < best * (1 - 1e-3):
            best, stale = mean, 0
        else:
            stale += 1
        if ckpt is not None:
            _save_checkpoint(ckpt, config, modules, gen, history, step, best, stale)
        if config.patience is not None and stale >= config.patience:
            history.stopped_early = True
            break
    bar.close()
    for handle in frozen:
        handle.remove()
    aligned.requires_grad_(True)
    aligned.eval()
    _finalise(aligned, acts, labels, config, sae, weights)
    aligned.history = history
    return aligned


@torch.no_grad()
def _finalise(aligned: AlignedSAE, acts: Tensor, labels: Tensor, config: AlignConfig, sae: SAE, weights) -> None:
    """Record each slot's typical on-value, the Stage-2 settings and the training binding accuracy."""
    z = torch.cat([aligned.concept_acts(chunk) for chunk in acts.split(4096)])
    scales = [float(z[labels == c, c].mean()) for c in range(aligned.cfg.n_concepts)]
    aligned.cfg.concept_scales = scales
    aligned.cfg.align_config = {
        k: (v if isinstance(v, (int, float, str, bool, type(None))) else str(v)) for k, v in asdict(config).items()
    } | {"weights_used": weights}
    aligned.cfg.metrics = aligned.cfg.metrics | {
        "binding_accuracy_train": float((z.argmax(-1) == labels).float().mean()),
        "base_architecture": aligned.cfg.base_architecture,
        "base_d_sae": sae.cfg.d_sae,
    }
