"""Stage 2 of AlignSAE: post-train a pretrained SAE so each ontology concept owns one latent.

`Stage2Trainer` holds one run: its constructor sets everything up (data, slots, value heads, interchange term,
optimiser, resume), `step` takes one optimiser step, `epoch` one pass over the labelled rows (then the early-stop
test and the checkpoint), `finalise` checks and annotates the result. `align` runs it to the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import torch
from jaxtyping import Float, Int
from sae_lens import SAE
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.activations.gather import gather_activations
from align_lens.activations.store import ActivationStore
from align_lens.adapter import answer_str_tokens
from align_lens.ontology import Ontology
from align_lens.saes.aligned import AlignedSAE, aligned_from_sae
from align_lens.training import checkpoint, data, losses, validation
from align_lens.training.config import AlignConfig, binding_for
from align_lens.training.history import AlignHistory
from align_lens.training.objective import Stage2Objective
from align_lens.training.pending import LOG_EVERY, PendingTerms
from align_lens.training.replica import Replica
from align_lens.training.schedule import warmup_cosine
from align_lens.training.slots import freeze_pretrained, init_concept_slots

CHECKPOINT = "align_checkpoint.pt"


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


def _sparsity_weight(sae: SAE, config: AlignConfig) -> float:
    if config.weights.sparsity is not None:
        return config.weights.sparsity
    details = (sae.cfg.metadata.training_architecture_details or {}) if sae.cfg.metadata else {}
    own = getattr(sae.cfg, "l1_coefficient", None) or getattr(sae.cfg, "l0_coefficient", None)
    return float(own or details.get("l1_coefficient") or details.get("l0_coefficient") or 1.0)


def _schedule(config: AlignConfig, total: int) -> Callable[[int], float]:
    opt = config.optimiser
    return lambda step: warmup_cosine(step, total, opt.warmup_steps, 0.1, opt.lr_schedule == "cosine")


class Stage2Trainer:
    """One Stage-2 run of `align` (same arguments), taken apart: construct (setup), `step`, `epoch`, `finalise`."""

    def __init__(
        self,
        sae: SAE,
        ontology: Ontology,
        model=None,
        activations: Float[Tensor, "n d_in"] | ActivationStore | None = None,
        labels: Int[Tensor, " n"] | None = None,
        unlabelled: Float[Tensor, "m d_in"] | ActivationStore | None = None,
        config: AlignConfig | None = None,
        parallel: Replica | None = None,
    ):
        config = config or AlignConfig()
        validation.check_align_config(config)
        if not ontology.select("train"):
            raise ValueError("the ontology has no training examples; add examples with split='train'.")
        self.sae, self.ontology, self.config = sae, ontology, config
        self.replica = parallel or Replica()
        self._data(model, activations, labels, unlabelled)
        device, seed = config.runtime.device, config.runtime.seed
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.aligned = aligned_from_sae(sae, ontology.names, device=device).to(dtype=self.dtype)
        self.aligned.cfg.metadata.hook_name = self.hook
        init_concept_slots(self.aligned, self.source, self.labels, config.init)
        self.frozen = [] if config.train_free else freeze_pretrained(self.aligned)
        self._value_heads(model)
        self._interchange(model)
        self._optimiser()
        self.history, self.pending, self.epoch_losses = AlignHistory(), PendingTerms(), []
        self.n_steps, self.best, self.stale = 0, math.inf, 0
        self._resume()

    # ---- setup ------------------------------------------------------------------------------------
    def _data(self, model, activations, labels, unlabelled) -> None:
        """The labelled rows (`source`, streamed: only batches and chunks are read), their `labels`, the unlabelled
        rows (`extra`)."""
        config = self.config
        self.hook = validation.check_hook(config, self.sae.cfg.metadata.hook_name if self.sae.cfg.metadata else None)
        if activations is None:
            if model is None:
                raise ValueError("give either model= (to gather activations) or activations=.")
            if self.hook is None:
                raise ValueError("the SAE has no cfg.metadata.hook_name; pass AlignConfig(hook_name=...).")
            prompts = self.ontology.prompts("train")
            activations = gather_activations(
                model, prompts, self.hook, config.position, config.gather_batch_size, config.runtime.progress
            )
        device, d_in = config.runtime.device, self.sae.cfg.d_in
        self.dtype = validation.dtype(config.dtype)
        self.source = data.as_rows(activations, d_in, "activations", device, self.dtype)
        n, n_concepts = len(self.source), self.ontology.n_concepts
        labels = validation.check_labels(data.labels_for(self.source, self.ontology, labels), n, n_concepts)
        data.check_rows(self.source, "activations")
        self.labels = labels.to(device)
        self.extra = None
        if unlabelled is not None:  # streamed: only each batch's rows are read
            self.extra = data.as_rows(unlabelled, d_in, "unlabelled activations", device, self.dtype)
            data.check_rows(self.extra, "unlabelled activations")

    def _value_heads(self, model) -> None:
        self.heads, self.answers = None, None
        if self.config.weights.value > 0:
            answers, vocab = _answer_targets(self.ontology, model)
            if not vocab:
                raise ValueError("weights.value > 0 needs examples with answers; set it to 0 or add answers.")
            n_concepts, d_in, device = self.ontology.n_concepts, self.sae.cfg.d_in, self.config.runtime.device
            self.heads = losses.ValueHeads(n_concepts, d_in, len(vocab)).to(device, self.dtype)
            self.answers = answers.to(device)

    def _interchange(self, model) -> None:
        self.inter = None
        if self.config.weights.interchange > 0:
            if model is None:
                raise ValueError("weights.interchange > 0 runs the model with slot edits; pass model= to align.")
            if self.hook is None:
                raise ValueError("the SAE has no cfg.metadata.hook_name; pass AlignConfig(hook_name=...).")
            from align_lens.training.interchange import InterchangeObjective

            train_ex, names = self.ontology.select("train"), self.ontology.names
            batch, seed = self.config.interchange_batch_size, self.config.runtime.seed
            span = self.config.interchange_span
            self.inter = InterchangeObjective(model, self.hook, train_ex, names, batch, seed, span)

    def _optimiser(self) -> None:
        config, n = self.config, len(self.source)
        self.params = [p for p in self.aligned.parameters() if p.requires_grad]
        self.params += list(self.heads.parameters()) if self.heads is not None else []
        opt = config.optimiser
        self.opt = torch.optim.AdamW(self.params, lr=opt.lr, weight_decay=opt.weight_decay)
        per_epoch = math.ceil(n / config.batch_size) - (n % config.batch_size == 1)  # 1-row batches are skipped
        self.total = config.steps or config.epochs * per_epoch
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, _schedule(config, self.total))
        w = config.weights
        self.binding = binding_for(config.binding, self.ontology.n_concepts)
        self.weights = {
            "reconstruction": w.reconstruction,
            "sparsity": _sparsity_weight(self.sae, config),
            "binding": w.binding,
            "decorrelation": w.decorrelation,
            "value": w.value,
            "silence": w.silence if self.extra is not None else 0.0,
        } | ({"interchange": w.interchange} if self.inter is not None else {})
        # The base SAE's own objective (sum-of-squares MSE + its sparsity) is divided by the activation
        # variance, so it keeps its internal balance while the supervised terms get scale-free weights.
        variance = data.total_variance(self.extra if self.extra is not None else self.source)
        objective = Stage2Objective(
            self.aligned,
            self.heads,
            binding=self.binding,
            variance=variance,
            decorrelation=self.replica.decorrelation,
        )
        self.objective = self.replica.wrap(objective)
        if config.compile:  # fuses the loss's small kernels (H100: 0.96× a plain SAELens step at 16k latents vs 1.15×)
            self.objective = torch.compile(self.objective)

    # ---- checkpoints --------------------------------------------------------------------------------
    @property
    def _modules(self) -> dict:
        heads = {"heads": self.heads} if self.heads is not None else {}
        return {"sae": self.aligned, "opt": self.opt, "sched": self.sched} | heads

    def _resume(self) -> None:
        """Continue from the checkpoint in `config.checkpoint_dir`, if there is one for this very run."""
        dir_ = self.config.checkpoint_dir
        self.checkpoint = Path(dir_) / CHECKPOINT if dir_ else None
        self.fingerprint: dict = {}
        if self.checkpoint is None:
            return
        sae_print = checkpoint.sae_fingerprint(self.sae)
        self.fingerprint = checkpoint.fingerprint(self.config, sae=sae_print, ontology=self.ontology.fingerprint())
        if not self.checkpoint.exists():
            return
        state = checkpoint.load(self.checkpoint)
        checkpoint.check_fingerprint(state.get("fingerprint", {}), self.fingerprint, self.checkpoint)
        for name, m in self._modules.items():
            m.load_state_dict(state[name])
        self.gen.set_state(state["generator"])
        self.history.steps = state["history"]
        self.n_steps, self.best, self.stale = state["step"], state["best"], state["stale"]
        self.history.stopped_early = self.config.patience is not None and self.stale >= self.config.patience

    def save_checkpoint(self, path: Path) -> None:
        """Everything needed to continue after this epoch, written atomically to `path`."""
        state = {name: m.state_dict() for name, m in self._modules.items()}
        state |= {
            "fingerprint": self.fingerprint,
            "generator": self.gen.get_state(),
            "history": self.history.steps,
            "step": self.n_steps,
            "best": self.best,
            "stale": self.stale,
        }
        checkpoint.save(path, state)

    # ---- training -----------------------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.n_steps >= self.total or self.history.stopped_early

    def step(self, idx: Int[Tensor, " b"]) -> None:
        """One optimiser step on the labelled rows `idx` (the global batch), plus unlabelled rows if any."""
        config, device, replica = self.config, self.config.runtime.device, self.replica
        idx = replica.local(idx)  # this process's share of the global batch
        x, y = data.rows_of(self.source, idx, device, self.dtype), self.labels[idx]
        if self.extra is not None:
            pick = replica.local(torch.randint(len(self.extra), (config.unlabelled_batch_size,), generator=self.gen))
            x = torch.cat([x, data.rows_of(self.extra, pick, device, self.dtype)])
        ans = self.answers[idx] if self.heads is not None and self.answers is not None else None
        terms = self.objective(x, y, ans)
        terms = replica.rescale(terms, len(y), len(x), int((ans >= 0).sum()) if ans is not None else 0)
        if self.inter is not None:
            terms["interchange"] = self.inter(self.aligned)
        loss = torch.stack([self.weights[k] * v for k, v in terms.items()]).sum()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, 1.0)
        self.opt.step()
        self.sched.step()
        self.pending.add(self.n_steps, terms | {"total": loss})  # read back every LOG_EVERY steps, not every step
        self.n_steps += 1
        if self.n_steps % LOG_EVERY == 0:
            self._log()

    def epoch(self, bar=None) -> None:
        """One pass over the labelled rows in a fresh order (up to the step budget), then the early-stop test and
        the checkpoint. `bar`: a tqdm bar to advance."""
        order = torch.randperm(len(self.source), generator=self.gen).to(self.config.runtime.device)
        for idx in order.split(self.config.batch_size):
            if self.n_steps >= self.total:
                break
            if len(idx) < 2:
                continue
            self.step(idx)
            if bar is not None:
                bar.update()
                bar.set_postfix(self.postfix, refresh=False)
        self._log()  # raises on a non-finite loss
        mean = sum(self.epoch_losses) / max(1, len(self.epoch_losses))
        self.epoch_losses = []
        if mean < self.best * (1 - 1e-3):
            self.best, self.stale = mean, 0
        else:
            self.stale += 1
        if self.checkpoint is not None and self.replica.writer:
            self.save_checkpoint(self.checkpoint)
        if self.config.patience is not None and self.stale >= self.config.patience:
            self.history.stopped_early = True

    def _log(self) -> None:
        records = self.pending.flush(self.replica.record)
        self.history.steps.extend(records)
        self.epoch_losses.extend(r["total"] for r in records)

    @property
    def postfix(self) -> dict[str, str]:
        """The latest logged loss terms, for a progress bar."""
        if not self.history.steps:
            return {}
        last = self.history.steps[-1]
        return {
            "total": f"{last['total']:.3g}",
            "bind": f"{last['binding']:.3g}",
            "rec": f"{last['reconstruction']:.3g}",
        }

    def run(self) -> AlignedSAE:
        """Train to the step budget or early stop, then `finalise`."""
        bar = tqdm(
            total=self.total, initial=self.n_steps, desc="align (stage 2)", disable=not self.config.runtime.progress
        )
        self.aligned.train()
        while not self.done:
            self.epoch(bar)
        bar.close()
        return self.finalise()

    def _own_slot_reading(self) -> tuple[Float[Tensor, " c"], int]:
        """Sum of each concept's own slot over its labelled rows, and the number of rows whose strongest slot is
        their own; streamed 1,024 rows at a time (a [rows, n_concepts] block at most)."""
        own = torch.zeros(self.ontology.n_concepts, dtype=torch.float64, device=self.labels.device)
        hits, start = 0, 0
        for chunk in self.source.chunks(1024):
            z = self.aligned.concept_acts(chunk.to(self.config.runtime.device, self.dtype))
            y = self.labels[start : start + len(chunk)]
            own.index_add_(0, y, z.gather(1, y[:, None]).squeeze(1).double())
            hits += int((z.argmax(-1) == y).sum())
            start += len(chunk)
        return own, hits

    @torch.no_grad()
    def finalise(self) -> AlignedSAE:
        """Check that it trained; record each slot's typical on-value, the settings, the training binding
        accuracy and what it was aligned on. Returns the aligned SAE with `.history`."""
        aligned, labels, n_concepts = self.aligned, self.labels, self.ontology.n_concepts
        for handle in self.frozen:
            handle.remove()
        fvu = self.history.series("reconstruction")
        end = sum(fvu[-10:]) / max(1, len(fvu[-10:]))
        validation.check_trained(aligned, len(fvu), fvu[0] if fvu else 0.0, end, "Stage 2")
        aligned.requires_grad_(True)
        aligned.eval()
        own, hits = self._own_slot_reading()
        counts = torch.bincount(labels, minlength=n_concepts)
        aligned.cfg.concept_scales = (own / counts).tolist()
        settings = json.loads(json.dumps(asdict(self.config), default=str))
        aligned.cfg.align_config = settings | {"weights_used": self.weights, "binding_used": self.binding}
        aligned.cfg.metrics = aligned.cfg.metrics | {
            "binding_accuracy_train": hits / len(labels),
            "base_architecture": aligned.cfg.base_architecture,
            "base_d_sae": self.sae.cfg.d_sae,
        }
        aligned.cfg.concept_counts = counts.tolist()
        aligned.cfg.ontology_hash = self.ontology.fingerprint()
        aligned.history = self.history  # pyright: ignore[reportArgumentType]  (Module.__setattr__ is typed for tensors)
        return aligned


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
    validation.check_align_config(config)  # before its runtime applies
    with config.runtime.threads_applied():
        return Stage2Trainer(sae, ontology, model, activations, labels, unlabelled, config, parallel).run()
