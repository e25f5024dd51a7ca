"""Train, evaluate and load a small HookedTransformer on the two-hop world, with weight checkpoints.

Each batch mixes two-hop questions of the training compositions (training frames) with atomic-fact questions
(every atomic fact, OOD ones included); the loss counts only the answer tokens and <eos>. Recipe measured on this
CPU (docs/two_hop.md): 4 layers, d_model 64, AdamW lr 1e-3, weight decay 0.1, batch 256, 30 % atomic questions.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Bool, Int
from safetensors.torch import load_file, save_file
from torch import Tensor
from tqdm.auto import tqdm
from transformer_lens import HookedTransformerConfig

from align_lens.adapter import build_model, load_transformer, save_transformer
from align_lens.training import checkpoint
from align_lens.training.schedule import warmup_cosine
from align_lens.worlds.tokenizer import build_tokenizer
from align_lens.worlds.two_hop import EOS, FORMATS, Format, TwoHopWorld

DATA_DIR = Path(__file__).parent / "data" / "two_hop_model"
WORLD_FILE = "world.json"
META_FILE = "two_hop.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"


def encode(tokenizer, prompts: list[str], answers: list[str]) -> tuple[Int[Tensor, "n t"], Bool[Tensor, "n t"]]:
    """Right-padded token rows of "prompt answer <eos>" and a mask of the positions whose NEXT token is a target
    (the last prompt token and each answer token before <eos>)."""
    p_ids = tokenizer(prompts)["input_ids"]
    a_ids = tokenizer([f"{a} {EOS}" for a in answers], add_special_tokens=False)["input_ids"]
    width = max(len(p) + len(a) for p, a in zip(p_ids, a_ids))
    tokens = torch.full((len(prompts), width), tokenizer.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for i, (p, a) in enumerate(zip(p_ids, a_ids)):
        tokens[i, : len(p) + len(a)] = torch.tensor(p + a)
        mask[i, len(p) - 1 : len(p) + len(a) - 1] = True
    return tokens, mask


def training_pool(world: TwoHopWorld, tokenizer, fmt: Format) -> dict[str, tuple[Tensor, Tensor]]:
    """Every (training composition × training frame) and every (atomic fact × atomic frame), encoded."""
    frames = world.frame_ids("train")
    comps = world.splits["train"]
    two_hop = encode(
        tokenizer,
        [world.question(c, f) for c in comps for f in frames],
        [world.answer(c, fmt) for c in comps for _ in frames],
    )
    facts = list(world.facts.items())
    atomic = encode(
        tokenizer,
        [world.atomic_question(e, r, i) for (e, r), _ in facts for i in range(len(world.atomic_frames()))],
        [v for _, v in facts for _ in world.atomic_frames()],
    )
    return {"two_hop": two_hop, "atomic": atomic}


def loss_on(model, tokens: Int[Tensor, "b t"], mask: Bool[Tensor, "b t"]) -> Tensor:
    """Mean next-token cross-entropy at the masked positions."""
    logits = model(tokens)[:, :-1]
    m = mask[:, :-1]
    return F.cross_entropy(logits[m], tokens[:, 1:][m])


@torch.no_grad()
def exact_accuracy(model, tokens: Int[Tensor, "n t"], mask: Bool[Tensor, "n t"], batch_size: int = 512) -> float:
    """Share of rows whose every target (answer tokens and <eos>) is the argmax: greedy-exact accuracy."""
    hits = []
    dev = model.cfg.device
    for tok, m in zip(tokens.split(batch_size), mask.split(batch_size)):
        pred = model(tok.to(dev)).argmax(-1).cpu()[:, :-1]
        ok = (pred == tok[:, 1:]) | ~m[:, :-1]
        hits.append(ok.all(-1))
    return float(torch.cat(hits).float().mean()) if hits else float("nan")


def eval_sets(
    world: TwoHopWorld, tokenizer, fmt: Format, n: int = 1000, seed: int = 0
) -> dict[str, tuple[Tensor, Tensor]]:
    """Encoded evaluation sets (at most `n` compositions each, seeded): train / heldout / ood in training frames,
    heldout in held-out frames ("heldout_frames"), and atomic facts."""
    rng = random.Random(f"eval/{seed}")
    train_frames, held_frames = world.frame_ids("train"), world.frame_ids("heldout")
    out = {}
    for name, split, pool in (
        ("train", "train", train_frames),
        ("heldout", "heldout", train_frames),
        ("heldout_frames", "heldout", held_frames),
        ("ood", "ood", train_frames),
    ):
        comps = world.splits[split]
        comps = rng.sample(comps, min(n, len(comps)))
        if comps and pool:
            chosen = [rng.choice(pool) for _ in comps]
            out[name] = encode(
                tokenizer, [world.question(c, f) for c, f in zip(comps, chosen)], [world.answer(c, fmt) for c in comps]
            )
    facts = rng.sample(list(world.facts.items()), min(n, len(world.facts)))
    out["atomic"] = encode(tokenizer, [world.atomic_question(e, r) for (e, r), _ in facts], [v for _, v in facts])
    return out


def evaluate(model, sets: dict[str, tuple[Tensor, Tensor]]) -> dict[str, float]:
    """Exact accuracy on each set of `eval_sets`."""
    was = model.training
    model.eval()
    out = {k: exact_accuracy(model, *v) for k, v in sets.items()}
    model.train(was)
    return out


def init_model(cfg: dict, tokenizer, seed: int, device: str = "cpu"):
    """The weights a training run with `seed` starts from: `build_model` right after `torch.manual_seed(seed)`."""
    torch.manual_seed(seed)
    return build_model(cfg, tokenizer=tokenizer, device=device)


def untrained_like(model, seed: int):
    """`model`'s architecture and tokenizer at the initialisation `train_two_hop_model(seed=seed)` starts from
    (its step-0 weights); the caller's torch RNG state is left as it was."""
    cfg = {k: v for k, v in model.cfg.to_dict().items() if k in HookedTransformerConfig.__dataclass_fields__}
    cfg = {k: v for k, v in cfg.items() if k not in ("n_params", "device")}
    with torch.random.fork_rng():
        return init_model(cfg, model.tokenizer, seed, str(model.cfg.device)).eval()


def train_two_hop_model(
    world: TwoHopWorld,
    out_dir: str | Path,
    fmt: Format = "explicit",
    n_layers: int = 4,
    d_model: int = 64,
    n_heads: int = 4,
    d_mlp: int = 256,
    steps: int = 800,
    lr: float = 1e-3,
    warmup: int = 200,
    weight_decay: float = 0.1,
    batch_size: int = 256,
    atomic_share: float = 0.3,
    init_scale: float = 1.0,
    lr_final: float = 1.0,
    seed: int = 0,
    device: str = "cpu",
    threads: int = 1,
    checkpoint_every: int = 250,
    eval_every: int = 250,
    eval_n: int = 1000,
    resume: bool = True,
    progress: bool = True,
):
    """Train (a linear warmup, then a constant lr, or with `lr_final` ≠ 1 a cosine towards `lr_final` × lr at
    `steps`, as `training.schedule.warmup_cosine`); returns the model. Resumable from `out_dir/checkpoints`.

    Writes into `out_dir`: the model (`save_transformer` format), world.json, two_hop.json (format, settings, final
    accuracies), train_log.jsonl (train / heldout / heldout_frames / ood / atomic accuracy at step 0, every
    `eval_every` steps and at the end) and checkpoints/step_XXXXXX.safetensors (weights every `checkpoint_every` steps, 0 = none).
    Next to the newest weight checkpoints, checkpoints/step_XXXXXX.pt (the two newest kept) hold what resuming needs:
    weights, optimizer, batch-sampler and torch RNG states, and the log rows so far.

    `resume=True` continues from the newest step_XXXXXX.pt: the same final weights and log rows as an uninterrupted
    run (bit-identical on the same device and `threads`; `wall_s` counts on). `init_scale` multiplies every weight
    matrix (embeddings included; not biases or LayerNorm) at initialisation, Omnigrok's lever for a memorise-first
    regime. With a constant lr (`lr_final` 1) a finished or interrupted run is extended by resuming it with more
    `steps`. A checkpoint written for other settings (world, format, model size, steps, lr, warmup, weight decay,
    batch, atomic share, init scale, final lr, seed, eval_every, eval_n) is refused with a ValueError naming them, before
    anything in `out_dir` is written. Starting afresh (`resume=False`, or no resumable checkpoint) replaces the
    folder's log and checkpoints. `threads` applies to this call only.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = Path(out_dir)
        ckpt_dir = out / CHECKPOINT_DIR
        settings = {"format": fmt, "seed": seed, "steps": steps, "lr": lr, "warmup": warmup}
        settings |= {"n_layers": n_layers, "d_model": d_model, "n_heads": n_heads, "d_mlp": d_mlp}
        settings |= {"weight_decay": weight_decay, "batch_size": batch_size, "atomic_share": atomic_share}
        settings |= {"eval_every": eval_every, "eval_n": eval_n}
        settings |= {"init_scale": init_scale} if init_scale != 1.0 else {}  # earlier checkpoints stay resumable
        settings |= {"lr_final": lr_final} if lr_final != 1.0 else {}
        settings = checkpoint.fingerprint(settings, world=world.params())
        state = _resume_state(ckpt_dir, settings) if resume else None  # refuses other settings before any write
        out.mkdir(parents=True, exist_ok=True)
        world.save(out / WORLD_FILE)
        tokenizer = build_tokenizer(world.vocabulary(), out / "tokenizer")
        pool = training_pool(world, tokenizer, fmt)
        sets = eval_sets(world, tokenizer, fmt, eval_n, seed)
        width = max(t.shape[1] for t, _ in [*pool.values(), *sets.values()])
        cfg = dict(
            n_layers=n_layers,
            d_model=d_model,
            n_heads=n_heads,
            d_head=d_model // n_heads,
            d_mlp=d_mlp,
            n_ctx=max(32, width),
            d_vocab=len(tokenizer),
            act_fn="gelu",
            normalization_type="LN",
        )
        model = init_model(cfg, tokenizer, seed, device)
        with torch.no_grad():
            for param in model.parameters():
                if param.dim() >= 2:
                    param.mul_(init_scale)
        save_transformer(model, out)  # config + tokenizer now, so checkpoints load while training runs
        opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
        gen = torch.Generator().manual_seed(seed)
        n_atomic = round(atomic_share * batch_size)
        if state is None:  # afresh: the folder's old log and checkpoints would describe another run
            start = 0
            for old in [*ckpt_dir.glob("step_*.pt"), *ckpt_dir.glob("step_*.safetensors")]:
                old.unlink()
            if checkpoint_every:
                ckpt_dir.mkdir(exist_ok=True)
                _save_weights(model, ckpt_dir, 0)
            log = [{"step": 0, "wall_s": 0.0, **evaluate(model, sets)}]
            (out / LOG_FILE).unlink(missing_ok=True)
            _append(out / LOG_FILE, log[-1])
        else:
            start, log = state["step"], list(state["log"])
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            gen.set_state(state["sampler_rng"])
            torch.set_rng_state(state["torch_rng"])
            for later in [s for s in checkpoint_steps(out) if s > start]:  # written after the checkpoint resumed
                (ckpt_dir / f"step_{later:06d}.safetensors").unlink()
            (out / LOG_FILE).write_text("".join(json.dumps(row) + "\n" for row in log))  # drops rows after `start`
        t0 = time.time() - (state["wall_s"] if state else 0.0)
        model.train()
        bar = tqdm(
            range(start + 1, steps + 1), desc=f"two-hop model ({fmt})", initial=start, total=steps, disable=not progress
        )
        for step in bar:
            for g in opt.param_groups:
                g["lr"] = lr * warmup_cosine(step - 1, steps, warmup, min_frac=lr_final, cosine=lr_final != 1.0)
            rows = []
            for key, k in (("two_hop", batch_size - n_atomic), ("atomic", n_atomic)):
                tok, m = pool[key]
                idx = torch.randint(len(tok), (k,), generator=gen)
                rows.append((tok[idx], m[idx]))
            w = max(t.shape[1] for t, _ in rows)
            pad = int(tokenizer.pad_token_id)  # pyright: ignore[reportArgumentType]  (set: the world's tokenizer has one)
            tokens = torch.cat([F.pad(t, (0, w - t.shape[1]), value=pad) for t, _ in rows])
            mask = torch.cat([F.pad(m, (0, w - m.shape[1])) for _, m in rows])
            loss = loss_on(model, tokens.to(device), mask.to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            if (eval_every and step % eval_every == 0) or step == steps:
                log.append(
                    {"step": step, "wall_s": round(time.time() - t0, 1), "loss": loss.item()} | evaluate(model, sets)
                )
                _append(out / LOG_FILE, log[-1])
            if checkpoint_every and (step % checkpoint_every == 0 or step == steps):
                _save_weights(model, ckpt_dir, step)
                _save_state(ckpt_dir, model, opt, gen, settings, step, log, time.time() - t0)
        model.eval()
        save_transformer(model, out)
        meta = {"format": fmt, "seed": seed, "steps": steps, "lr": lr, "weight_decay": weight_decay}
        meta |= {
            "batch_size": batch_size,
            "atomic_share": atomic_share,
            "init_scale": init_scale,
            "lr_final": lr_final,
            "final": log[-1],
            "world": world.summary(),
        }
        (out / META_FILE).write_text(json.dumps(meta, indent=1))
        return model
    finally:
        torch.set_num_threads(previous)


def _append(path: Path, row: dict) -> None:
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def _resume_state(ckpt_dir: Path, settings: dict) -> dict | None:
    """The newest resumable checkpoint (step_XXXXXX.pt) if it was written for `settings`, None if there is none."""
    ckpts = sorted(ckpt_dir.glob("step_*.pt"))
    if not ckpts:
        return None
    state = checkpoint.load(ckpts[-1])
    found, now = state["meta"]["settings"], settings["settings"]
    if "lr_final" not in now and "lr_final" not in found and state["step"] <= now["steps"]:
        found["steps"] = now["steps"]  # a constant lr does not depend on `steps`: a longer run extends this one
    try:
        checkpoint.check_fingerprint(state["meta"], settings, ckpts[-1])
    except ValueError as e:
        raise ValueError(
            f"{e} Or train afresh in {ckpt_dir.parent}, replacing its log and checkpoints: resume=False "
            "(align-lens train-two-hop --no-resume)."
        ) from None
    return state


def _save_state(
    ckpt_dir: Path, model, opt, gen: torch.Generator, settings: dict, step: int, log: list[dict], wall_s: float
) -> None:
    """Write what resuming at `step` needs to step_XXXXXX.pt atomically; keep the two newest."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "sampler_rng": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "meta": settings,
        "step": step,
        "log": log,
        "wall_s": wall_s,
    }
    checkpoint.save(ckpt_dir / f"step_{step:06d}.pt", state)
    checkpoint.keep_newest(ckpt_dir, "step_*.pt", 2)


def _save_weights(model, ckpt_dir: Path, step: int) -> None:
    save_file(
        {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()},
        ckpt_dir / f"step_{step:06d}.safetensors",
    )


def checkpoint_steps(path: str | Path) -> list[int]:
    """Steps with a saved checkpoint under `path`/checkpoints, ascending."""
    return sorted(int(p.stem.split("_")[1]) for p in (Path(path) / CHECKPOINT_DIR).glob("step_*.safetensors"))


def load_checkpoint(path: str | Path, step: int, device: str = "cpu"):
    """The model of `path` with the weights of checkpoint `step`."""
    f = Path(path) / CHECKPOINT_DIR / f"step_{step:06d}.safetensors"
    if not f.exists():
        raise FileNotFoundError(f"no checkpoint {f}; saved steps are {checkpoint_steps(path)}")
    model = load_transformer(path, device=device)
    model.load_state_dict(load_file(f, device=device), strict=True)
    return model.eval()


def load_two_hop_model(path: str | Path | None = None, device: str = "cpu"):
    """A trained two-hop model (default: the explicit-format one shipped in worlds/data/two_hop_model)."""
    return load_transformer(path or DATA_DIR, device=device)


def load_two_hop_world(path: str | Path | None = None) -> TwoHopWorld:
    """The world a saved two-hop model was trained on."""
    f = Path(path or DATA_DIR) / WORLD_FILE
    if not f.exists():
        raise FileNotFoundError(f"{f} not found; train_two_hop_model writes it next to the model.")
    return TwoHopWorld.load(f)


def load_two_hop_meta(path: str | Path | None = None) -> dict:
    """Format, settings and final accuracies of a saved two-hop model (two_hop.json)."""
    return json.loads((Path(path or DATA_DIR) / META_FILE).read_text())
