"""Stage 2 of AlignSAE: post-train a pretrained SAE so each ontology concept owns one latent."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor, nn
from tqdm.auto import tqdm

from align_lens.activations.gather import gather_activations
from align_lens.activations.store import ActivationStore
from align_lens.adapter import answer_str_tokens
from align_lens.ontology import Ontology
from align_lens.saes.aligned import AlignedSAE, aligned_from_sae
from align_lens.training import checkpoint, data, losses, validation
from align_lens.training.config import LOG_EVERY, AlignConfig, AlignHistory, PendingTerms
from align_lens.training.distributed import Replica
from align_lens.training.schedule import warmup_cosine


# ---- data -----------------------------------------------------------------------------------
def _answer_targets(ontology: Ontology, model) -> tuple[Int[Tensor, " n"], list[str]]:
    """Index of each train example's answer first token (by the model's tokenizer when given)."""
    firsts = []
    for e in ontology.select("train"):
        if e.answer is None:
            firsts.append(None)
        elif model is not None:
            firsts.append(answer_str_tokens(model, e.answer)[0].strip())
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
    return lambda step: warmup_cosine(step, total, config.warmup_steps, 0.1, config.lr_schedule == "cosine")


# ---- checkpoints ----------------------------------------------------------------------------
CHECKPOINT = "align_checkpoint.pt"


def _settings(config: AlignConfig) -> dict:
    return {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint_dir", "compile")}


def _fingerprint(config: AlignConfig, sae: SAE, ontology: Ontology) -> dict:
    """What a checkpoint is valid for: the Stage-1 SAE, the ontology and the settings."""
    return {"sae": checkpoint.sae_fingerprint(sae), "ontology": ontology.fingerprint(), "settings": _settings(config)}


def _save_checkpoint(path: Path, fingerprint: dict, modules: dict, gen, history, step: int, best: float, stale: int):
    """Everything needed to continue after this epoch, written atomically."""
    state = {name: m.state_dict() for name, m in modules.items()}
    state |= {
        "fingerprint": fingerprint,
        "generator": gen.get_state(),
        "history": history.steps,
        "step": step,
        "best": best,
        "stale": stale,
    }
    checkpoint.save(path, state)


def _resume(path: Path, fingerprint: dict, modules: dict, gen, history) -> tuple[int, float, int]:
    state = checkpoint.load(path)
    checkpoint.check_fingerprint(state.get("fingerprint", {}), fingerprint, path)
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
    # Split each [batch, d_sae] tensor once and slice only the small parts: in backward, every slice of a
    # big tensor costs a zero-filled buffer of its full size (profiled: ~12 % of a step at 16k latents).
    z_free, z_slots = z.split([nf, z.shape[-1] - nf], dim=-1)
    pre_slots = pre[:, nf:]
    zero = x.new_zeros(())
    return {
        "reconstruction": losses.reconstruction_loss(x, x_hat) / variance,
        "sparsity": aligned.free_sparsity_loss(z, pre) / variance,
        "binding": losses.binding_loss(pre_slots[:n], labels, binding),
        "decorrelation": decorrelation(z_slots[:n].detach(), z_free[:n]),
        "value": heads.loss(x_hat[:n], labels, answers) if heads is not None and answers is not None else zero,
        "silence": losses.silence_loss(z_slots[n:]) if len(x) > n else zero,
    }


class Stage2Objective(nn.Module):
    """`stage2_terms` as a module: what DistributedDataParallel wraps under data parallelism."""

    def __init__(self, aligned: AlignedSAE, heads: losses.ValueHeads | None, **settings):
        super().__init__()
        self.aligned, self.heads, self.settings = aligned, heads, settings

    def forward(self, x: Tensor, labels: Tensor, answers: Tensor | None = None) -> dict[str, Tensor]:
        return stage2_terms(self.aligned, x, labels, heads=self.heads, answers=answers, **self.settings)


def align(
    sae: SAE,
    ontology: Ontology,
    model=None,
    activations: Float[Tensor, "n d_in"] | ActivationStore | None = None,
    labels: Int[Tensor, " n"] | None = None,
    unlabelled: Float[Tensor, "m d_in"] | ActivationStore | None = None,
    config: AlignConfig | None = None,
    parallel: Replica | None = None,
) -> AlignedSAE:
    """Post-train `sae` so that each concept of `ontology` owns a dedicated latent.

    Give either `model` (activations are gathered at the SAE's hook for the ontology's training
    prompts) or `activations` (+ `labels`, default: the ontology's training labels). `unlabelled`
    activations (e.g. every token of ordinary text) are mixed into each batch for reconstruction,
    sparsity, and slot silence. Either may be an `ActivationStore` on disk: the unlabelled one is streamed
    batch by batch, and a labelled store brings its own labels. `parallel`: this process's part in
    data-parallel training (`distributed.DataParallel`); None: one process. Returns a new AlignedSAE with
    `.history`; `sae` is not modified.
    """
    config = config or AlignConfig()
    validation.check_align_config(config)
    if not ontology.select("train"):
        raise ValueError("the ontology has no training examples; add examples with split='train'.")
    hook = validation.check_hook(config, sae.cfg.metadata.hook_name if sae.cfg.metadata else None)
    if activations is None:
        if model is None:
            raise ValueError("give either model= (to gather activations) or activations=.")
        if hook is None:
            raise ValueError("the SAE has no cfg.metadata.hook_name; pass AlignConfig(hook_name=...).")
        activations = gather_activations(
            model, ontology.prompts("train"), hook, config.position, config.gather_batch_size, config.progress
        )
    d_in, dtype = sae.cfg.d_in, validation.dtype(config.dtype)
    source = data.as_rows(activations, d_in, "activations", config.device, dtype)
    labels = validation.check_labels(data.labels_for(source, ontology, labels), len(source), ontology.n_concepts)
    data.check_rows(source, "activations")
    acts = source.read_all().to(config.device, dtype)  # slot init and the final statistics read every labelled row
    labels = labels.to(config.device)
    extra = None
    if unlabelled is not None:  # streamed: only each batch's rows are read
        extra = data.as_rows(unlabelled, d_in, "unlabelled activations", config.device, dtype)
        data.check_rows(extra, "unlabelled activations")
    replica = parallel or Replica()

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

    inter = None
    if config.interchange_weight > 0:
        if model is None:
            raise ValueError("interchange_weight > 0 runs the model with slot edits; pass model= to align.")
        if hook is None:
            raise ValueError("the SAE has no cfg.metadata.hook_name; pass AlignConfig(hook_name=...).")
        from align_lens.training.interchange import InterchangeObjective

        train_ex = ontology.select("train")
        inter = InterchangeObjective(model, hook, train_ex, ontology.names, config.interchange_batch_size, config.seed)

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
    } | ({"interchange": config.interchange_weight} if inter is not None else {})
    # The base SAE's own objective (sum-of-squares MSE + its sparsity) is divided by the activation
    # variance, so it keeps its internal balance while the supervised terms get scale-free weights.
    variance = data.total_variance(extra if extra is not None else source)
    objective = replica.wrap(
        Stage2Objective(aligned, heads, binding=config.binding, variance=variance, decorrelation=replica.decorrelation)
    )
    if config.compile:  # fuses the loss's small kernels (H100: 0.96× a plain SAELens step at 16k latents vs 1.15×)
        objective = torch.compile(objective)
    history, pending = AlignHistory(), PendingTerms()
    best, stale, epoch_losses, step = math.inf, 0, [], 0
    modules = {"sae": aligned, "opt": opt, "sched": sched} | ({"heads": heads} if heads is not None else {})
    ckpt = Path(config.checkpoint_dir) / CHECKPOINT if config.checkpoint_dir else None
    fingerprint = _fingerprint(config, sae, ontology) if ckpt is not None else {}
    if ckpt is not None and ckpt.exists():
        step, best, stale = _resume(ckpt, fingerprint, modules, gen, history)
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
            idx = replica.local(idx)  # this process's share of the global batch
            x, y = data.rows_of(source, idx, config.device, dtype), labels[idx]
            if extra is not None:
                pick = replica.local(torch.randint(len(extra), (config.unlabelled_batch_size,), generator=gen))
                x = torch.cat([x, data.rows_of(extra, pick, config.device, dtype)])
            ans = answers[idx] if heads is not None and answers is not None else None
            terms = objective(x, y, ans)
            terms = replica.rescale(terms, len(y), len(x), int((ans >= 0).sum()) if ans is not None else 0)
            if inter is not None:
                terms["interchange"] = inter(aligned)
            loss = torch.stack([weights[k] * v for k, v in terms.items()]).sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
            sched.step()
            pending.add(step, terms | {"total": loss})  # read back every LOG_EVERY steps, not every step
            step += 1
            bar.update()
            if step % LOG_EVERY == 0:
                _log(pending.flush(replica.record), history, epoch_losses, bar)
        _log(pending.flush(replica.record), history, epoch_losses, bar)  # raises on a non-finite loss
        mean = sum(epoch_losses) / max(1, len(epoch_losses))
        epoch_losses = []
        if mean < best * (1 - 1e-3):
            best, stale = mean, 0
        else:
            stale += 1
        if ckpt is not None and replica.writer:
            _save_checkpoint(ckpt, fingerprint, modules, gen, history, step, best, stale)
        if config.patience is not None and stale >= config.patience:
            history.stopped_early = True
            break
    bar.close()
    for handle in frozen:
        handle.remove()
    fvu = history.series("reconstruction")
    end = sum(fvu[-10:]) / max(1, len(fvu[-10:]))
    validation.check_trained(aligned, len(fvu), fvu[0] if fvu else 0.0, end, "Stage 2")
    aligned.requires_grad_(True)
    aligned.eval()
    _finalise(aligned, acts, labels, config, sae, weights)
    aligned.cfg.concept_counts = torch.bincount(labels.cpu(), minlength=ontology.n_concepts).tolist()
    aligned.cfg.ontology_hash = ontology.fingerprint()
    aligned.history = history  # pyright: ignore[reportArgumentType]  (Module.__setattr__ is typed for tensors)
    return aligned


def _log(records: list[dict[str, float]], history: AlignHistory, epoch_losses: list[float], bar) -> None:
    history.steps.extend(records)
    epoch_losses.extend(r["total"] for r in records)
    if records:
        last = records[-1]
        bar.set_postfix(
            total=f"{last['total']:.3g}", bind=f"{last['binding']:.3g}", rec=f"{last['reconstruction']:.3g}"
        )


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
