"""Train, evaluate and load the small from-scratch base model of the bio world.

Recipe (see the tiny-base-model notes): a 4-layer, 128-wide GPT-2-style model trained on packed 128-token
sequences of biographies and QA lines, with loss on every bio token and on the answer tokens of QA lines.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.adapter import build_model, load_transformer, save_transformer
from align_lens.training import checkpoint
from align_lens.training.schedule import warmup_cosine
from align_lens.worlds.bio import RELATIONS, BioWorld
from align_lens.worlds.tokenizer import build_tokenizer

DATA_DIR = Path(__file__).parent / "data" / "base_model"
WORLD_FILE = "world.json"
EVAL_FILE = "eval.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"


# ---- data ---------------------------------------------------------------------------------
def pack_epoch(
    world: BioWorld, tokenizer, epoch: int, seed: int, n_ctx: int
) -> tuple[Int[Tensor, "n_seq n_ctx"], Bool[Tensor, "n_seq n_ctx"]]:
    """Shuffle one epoch of documents (seeded) and pack them greedily into padded `n_ctx`-token rows.

    The mask marks tokens that are loss targets: every bio token after <bos>, and answer + <eos> of QA lines.
    """
    docs = world.documents(epoch)
    random.Random(f"pack/{seed}/{epoch}").shuffle(docs)
    ids = tokenizer([d.text for d in docs])["input_ids"]
    rows, masks, row, mask = [], [], [], []
    for doc, toks in zip(docs, ids):
        if len(toks) > n_ctx:
            raise ValueError(f"a document has {len(toks)} tokens, more than n_ctx={n_ctx}: {doc.text[:80]}...")
        if len(row) + len(toks) > n_ctx:
            rows.append(row)
            masks.append(mask)
            row, mask = [], []
        row += toks
        mask += [False] + [j >= doc.loss_from for j in range(len(toks) - 1)]
    rows.append(row)
    masks.append(mask)
    tokens = torch.full((len(rows), n_ctx), tokenizer.pad_token_id, dtype=torch.long)
    target = torch.zeros((len(rows), n_ctx), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, : len(r)] = torch.tensor(r)
        target[i, : len(m)] = torch.tensor(m)
    return tokens, target


def batches(
    world: BioWorld, tokenizer, seed: int, n_ctx: int, batch_size: int, epoch: int = 0, batch: int = 0
) -> Iterator[tuple[int, int, Int[Tensor, "b n_ctx"], Bool[Tensor, "b n_ctx"]]]:
    """Endless (epoch, batch index, tokens, target mask) stream from (`epoch`, `batch`) on.

    Each epoch is packed by `pack_epoch`; its last partial batch is dropped.
    """
    while True:
        tokens, target = pack_epoch(world, tokenizer, epoch, seed, n_ctx)
        for b in range(batch, len(tokens) // batch_size):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            yield epoch, b, tokens[sl], target[sl]
        epoch, batch = epoch + 1, 0


def lr_at(step: int, steps: int, lr: float, warmup: int, min_lr_frac: float) -> float:
    """Linear warmup, then cosine decay to `min_lr_frac * lr` at `steps`."""
    return lr * warmup_cosine(step, steps, warmup, min_lr_frac)


def masked_loss(model, tokens: Int[Tensor, "b t"], target: Bool[Tensor, "b t"]) -> Tensor:
    """Mean next-token cross-entropy over the positions marked in `target`."""
    logits = model(tokens)[:, :-1]
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1), reduction="none")
    m = target[:, 1:].reshape(-1).float()
    return (ce * m).sum() / m.sum().clamp(min=1)


def train_step(
    model,
    opt: torch.optim.Optimizer,
    tokens: Int[Tensor, "b t"],
    target: Bool[Tensor, "b t"],
    grad_clip: float,
    bf16: bool = False,
) -> Tensor:
    """One optimiser step on the masked next-token loss, the forward under bf16 autocast with `bf16`; the loss."""
    with torch.autocast(tokens.device.type, dtype=torch.bfloat16, enabled=bf16):
        loss = masked_loss(model, tokens, target)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    opt.step()
    return loss


# ---- evaluation ---------------------------------------------------------------------------
@torch.no_grad()
def evaluate_base_model(
    model, world: BioWorld, split: str = "heldout", n_people: int | None = None, batch_size: int = 256
) -> dict[str, dict[str, float]]:
    """Exact-answer accuracy per relation on `split` templates for the first `n_people` people.

    Teacher-forced argmax over the answer tokens; with every earlier token right this equals greedy decoding,
    so "full" is exact greedy-answer accuracy and "first_token" scores the first answer token only.
    """
    examples = world.ontology(n_people).select(split)
    tok = model.tokenizer
    prompts = tok([e.prompt for e in examples])["input_ids"]
    answers = tok([e.answer for e in examples], add_special_tokens=False)["input_ids"]
    first, full = torch.zeros(len(examples), dtype=torch.bool), torch.zeros(len(examples), dtype=torch.bool)
    device = model.cfg.device
    for start in range(0, len(examples), batch_size):
        p_chunk, a_chunk = prompts[start : start + batch_size], answers[start : start + batch_size]
        seqs = [p + a for p, a in zip(p_chunk, a_chunk)]
        tokens = torch.full((len(seqs), max(map(len, seqs))), tok.pad_token_id, dtype=torch.long)
        want = torch.full_like(tokens, -1)  # want[i, j]: token expected as prediction at position j
        for i, (p, a) in enumerate(zip(p_chunk, a_chunk)):
            tokens[i, : len(p) + len(a)] = torch.tensor(p + a)
            want[i, len(p) - 1 : len(p) + len(a) - 1] = torch.tensor(a)
        pred = model(tokens.to(device)).argmax(-1).cpu()
        hit = (pred == want) | (want < 0)
        starts = torch.tensor([len(p) - 1 for p in p_chunk])
        first[start : start + len(seqs)] = hit[torch.arange(len(seqs)), starts]
        full[start : start + len(seqs)] = hit.all(-1)
    out = {}
    for rel in RELATIONS:
        idx = torch.tensor([e.concept == rel for e in examples])
        out[rel] = {"first_token": first[idx].float().mean().item(), "full": full[idx].float().mean().item()}
    out["all"] = {"first_token": first.float().mean().item(), "full": full.float().mean().item()}
    return out


def evaluate_splits(model, world: BioWorld, n_people: int | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """`evaluate_base_model` on both the train and the heldout templates."""
    return {s: evaluate_base_model(model, world, s, n_people) for s in ("train", "heldout")}


# ---- training -----------------------------------------------------------------------------
def train_base_model(
    world: BioWorld,
    out_dir: str | Path,
    n_layers: int = 4,
    d_model: int = 128,
    n_heads: int = 4,
    d_head: int = 32,
    d_mlp: int = 512,
    n_ctx: int = 128,
    steps: int = 2000,
    lr: float = 2e-3,
    min_lr_frac: float = 0.1,
    warmup: int = 200,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    batch_size: int = 32,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 2,
    checkpoint_every: int = 250,
    keep_checkpoints: bool = True,
    eval_every: int = 250,
    eval_people: int = 100,
    resume: bool = True,
    progress: bool = True,
):
    """Train the base model from scratch on `world`; resumable from `out_dir/checkpoints`.

    Writes the model (`save_transformer` format), `world.json`, `train_log.jsonl` (periodic evals on the first
    `eval_people` people) and `eval.json` (all people) into `out_dir`, and returns the model. The same seed
    gives the same weights, also across an interruption (bit-identical for the same `threads`).
    `keep_checkpoints=False` deletes the checkpoint folder once training is done. `threads` applies to this
    call only.
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = Path(out_dir)
        ckpt_dir = out / CHECKPOINT_DIR
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        world.save(out / WORLD_FILE)
        tokenizer = build_tokenizer(world.vocabulary(), out / "tokenizer")
        cfg = dict(
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            d_head=d_head,
            d_mlp=d_mlp,
            n_ctx=n_ctx,
            d_vocab=len(tokenizer),
            act_fn="gelu",
            normalization_type="LN",
        )
        torch.manual_seed(seed)
        model = build_model(cfg, tokenizer=tokenizer, device=device)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
        settings = {"seed": seed, "steps": steps, "batch_size": batch_size}
        meta = checkpoint.fingerprint(settings, cfg=cfg, world=world.params())
        step, epoch, batch, wall = _load_checkpoint(ckpt_dir, model, opt, meta, device) if resume else (0, 0, 0, 0.0)
        _log_as_of(out / LOG_FILE, step)
        data = batches(world, tokenizer, seed, n_ctx, batch_size, epoch, batch)
        bar = tqdm(total=steps, initial=step, desc="base model", disable=not progress)
        model.train()
        t0 = time.time() - wall
        while step < steps:
            epoch, batch, tokens, target = next(data)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr, warmup, min_lr_frac)
            loss = train_step(model, opt, tokens.to(device), target.to(device), grad_clip)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if step % eval_every == 0 or step == steps:
                model.eval()
                acc = evaluate_splits(model, world, eval_people)
                model.train()
                row = {"step": step, "loss": loss.item(), "wall_s": round(time.time() - t0, 1), **acc}
                with open(out / LOG_FILE, "a") as f:
                    f.write(json.dumps(row) + "\n")
                bar.set_postfix(
                    loss=f"{loss.item():.3f}",
                    train=f"{acc['train']['all']['full']:.3f}",
                    heldout=f"{acc['heldout']['all']['full']:.3f}",
                )
            if step % checkpoint_every == 0 or step == steps:
                _save_checkpoint(ckpt_dir, model, opt, meta, step, epoch, batch, time.time() - t0)
        bar.close()
        model.eval()
        save_transformer(model, out)
        (out / EVAL_FILE).write_text(json.dumps(evaluate_splits(model, world), indent=1))
        if not keep_checkpoints:
            shutil.rmtree(ckpt_dir)
        return model
    finally:
        torch.set_num_threads(previous_threads)


def _load_checkpoint(ckpt_dir: Path, model, opt, meta: dict, device: str) -> tuple[int, int, int, float]:
    """Restore the newest checkpoint into `model` and `opt`; return (step, epoch, next batch, training seconds so
    far; 0 in checkpoints older than that field), or zeros if none."""
    ckpts = sorted(ckpt_dir.glob("step_*.pt"))
    if not ckpts:
        return 0, 0, 0, 0.0
    state = checkpoint.load(ckpts[-1], device)
    checkpoint.check_fingerprint(state["meta"], meta, ckpts[-1])
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    return state["step"], state["epoch"], state["batch"] + 1, float(state.get("wall_s", 0.0))


def _log_as_of(path: Path, step: int) -> None:
    """The training log as it was at checkpoint `step`: removed at step 0, else without the rows written after it."""
    if step == 0:
        path.unlink(missing_ok=True)
    elif path.exists():
        rows = [line for line in path.read_text().splitlines() if json.loads(line)["step"] <= step]
        path.write_text("".join(row + "\n" for row in rows))


def _save_checkpoint(
    ckpt_dir: Path, model, opt, meta: dict, step: int, epoch: int, batch: int, wall_s: float, keep: int = 2
) -> None:
    """Write step_<step>.pt atomically and keep only the newest `keep` checkpoints."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "meta": meta,
        "step": step,
        "epoch": epoch,
        "batch": batch,
        "wall_s": wall_s,
    }
    checkpoint.save(ckpt_dir / f"step_{step:06d}.pt", state)
    checkpoint.keep_newest(ckpt_dir, "step_*.pt", keep)


# ---- shipped model ------------------------------------------------------------------------
def load_base_model(path: str | Path | None = None, device: str = "cpu"):
    """The trained base model (default: the one shipped in align_lens/worlds/data/base_model)."""
    return load_transformer(path or DATA_DIR, device=device)


def load_base_world(path: str | Path | None = None) -> BioWorld:
    """The world a saved base model was trained on, rebuilt from its world.json."""
    path = Path(path or DATA_DIR) / WORLD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; it is written by train_base_model next to the model.")
    return BioWorld.load(path)
