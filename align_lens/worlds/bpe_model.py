"""A GPT-2-shaped model trained from scratch on the BPE biography world; evaluation by exact greedy answers.

The model is of the GPT-2 family (learned positions, LayerNorm, gelu_new, d_vocab 50,257, BOS prepended, GPT-2's
tokenizer attached). Training runs on a compact copy whose vocabulary is the few thousand ids the world uses
(the softmax over 50,257 rows would cost more than the transformer); the saved model is the full-vocabulary
expansion, every other token at the fill of `align_lens.adapter.compact_vocab`, stored as the used rows only.
"""

from __future__ import annotations

import json
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import torch
from jaxtyping import Bool, Int
from torch import Tensor
from tqdm.auto import tqdm

from align_lens.adapter import build_model, expand_vocab, load_transformer, save_transformer
from align_lens.training import checkpoint
from align_lens.worlds.base_model import _load_checkpoint, _log_as_of, _save_checkpoint, lr_at, train_step
from align_lens.worlds.bio import RELATIONS
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.gpt2_tokenizer import VOCAB_SIZE, load_gpt2_tokenizer

DATA_DIR = Path(__file__).parent / "data" / "bio_bpe_model"
WORLD_FILE = "world.json"
EVAL_FILE = "eval.json"
LOG_FILE = "train_log.jsonl"
CHECKPOINT_DIR = "checkpoints"
EVAL_SETS = ("train", "phrasings", "people", "unseen")  # see `eval_examples`


def gpt2_config(
    n_layers: int = 6, d_model: int = 128, d_head: int = 32, n_ctx: int = 256, d_vocab: int = VOCAB_SIZE
) -> dict:
    """A HookedTransformerConfig dict of the GPT-2 family (4 × d_model MLP, d_model / d_head heads)."""
    if d_model % d_head:
        raise ValueError(f"d_model {d_model} is not a multiple of d_head {d_head}")
    return dict(
        n_layers=n_layers,
        d_model=d_model,
        n_heads=d_model // d_head,
        d_head=d_head,
        d_mlp=4 * d_model,
        n_ctx=n_ctx,
        d_vocab=d_vocab,
        act_fn="gelu_new",
        normalization_type="LN",
        positional_embedding_type="standard",
        original_architecture="GPT2LMHeadModel",
        default_prepend_bos=True,
    )


# ---- data ---------------------------------------------------------------------------------
def pack_epoch(
    world: BpeBioWorld, tokenizer, lookup: Int[Tensor, " d_vocab"], epoch: int, seed: int, n_ctx: int
) -> tuple[Int[Tensor, "n_seq n_ctx"], Bool[Tensor, "n_seq n_ctx"]]:
    """One epoch of documents, shuffled (seeded) and packed greedily into `n_ctx`-token rows of compact ids,
    padded with <|endoftext|>; the mask marks loss targets (tokens from each document's `loss_from` on)."""
    docs = world.documents(epoch)
    random.Random(f"pack/{seed}/{epoch}").shuffle(docs)
    enc = tokenizer([d.text for d in docs], return_offsets_mapping=True)
    rows, masks, row, mask = [], [], [], []
    for doc, toks, offsets in zip(docs, enc["input_ids"], enc["offset_mapping"]):
        if len(toks) > n_ctx:
            raise ValueError(f"a document has {len(toks)} tokens, more than n_ctx={n_ctx}: {doc.text[:80]}...")
        if len(row) + len(toks) > n_ctx:
            rows.append(row)
            masks.append(mask)
            row, mask = [], []
        row += toks
        mask += [False] + [start >= doc.loss_from for start, _ in offsets[1:]]
    rows.append(row)
    masks.append(mask)
    tokens = torch.full((len(rows), n_ctx), tokenizer.pad_token_id, dtype=torch.long)
    target = torch.zeros((len(rows), n_ctx), dtype=torch.bool)
    for i, (r, m) in enumerate(zip(rows, masks)):
        tokens[i, : len(r)] = torch.tensor(r)
        target[i, : len(m)] = torch.tensor(m)
    return lookup[tokens], target


def batches(
    world: BpeBioWorld, tokenizer, lookup: Tensor, seed: int, n_ctx: int, batch_size: int, epoch: int, batch: int
) -> Iterator[tuple[int, int, Tensor, Tensor]]:
    """Endless (epoch, batch index, tokens, target mask) stream from (`epoch`, `batch`) on; partial batches dropped."""
    while True:
        tokens, target = pack_epoch(world, tokenizer, lookup, epoch, seed, n_ctx)
        for b in range(batch, len(tokens) // batch_size):
            sl = slice(b * batch_size, (b + 1) * batch_size)
            yield epoch, b, tokens[sl], target[sl]
        epoch, batch = epoch + 1, 0


def vocab_lookup(rows: Sequence[int]) -> Int[Tensor, " d_vocab"]:
    """GPT-2 id → compact id (-1 for ids the world never uses)."""
    lookup = torch.full((VOCAB_SIZE,), -1, dtype=torch.long)
    lookup[torch.tensor(rows)] = torch.arange(len(rows))
    return lookup


# ---- evaluation ---------------------------------------------------------------------------
def eval_examples(world: BpeBioWorld, which: str, n_people: int | None = None, max_examples: int | None = None):
    """Examples of an evaluation set: "train" (train people × training phrasings), "phrasings" (held-out
    phrasings), "people" (held-out people × training phrasings) or "unseen" (the phrasings in no split); at most
    `n_people` people per group, and at most `max_examples` examples (evenly strided, so every relation stays)."""
    if which == "train":
        examples = world.ontology("phrasings", n_people).select("train")
    else:
        examples = world.ontology(which, n_people).select("heldout")
    if max_examples is not None and len(examples) > max_examples:
        stride = len(examples) / max_examples
        examples = [examples[int(i * stride)] for i in range(max_examples)]
    return examples


@torch.no_grad()
def answer_accuracy(
    model, tokenizer, examples, rows: Sequence[int], compact: bool = False, batch_size: int = 256
) -> dict[str, dict[str, float]]:
    """Per relation: share of examples whose first answer token, and whose whole answer then <|endoftext|>
    ("full"), are the argmax after the prompt and the answer so far (teacher-forced: equal to exact greedy
    decoding up to the stop). The argmax runs over the world's token ids `rows` only: a full-vocabulary model at
    the compact-vocabulary fill never predicts another, so this equals the full argmax at a fraction of the cost.
    `compact=True`: `model` is the training copy whose token i is GPT-2 token `rows[i]`."""
    eos = tokenizer.eos_token_id
    rows_t = torch.tensor(rows)
    lookup = vocab_lookup(rows)
    prompts = tokenizer([e.prompt for e in examples])["input_ids"]
    answers = [a + [eos] for a in tokenizer([e.answer for e in examples], add_special_tokens=False)["input_ids"]]
    first = torch.zeros(len(examples), dtype=torch.bool)
    full = torch.zeros(len(examples), dtype=torch.bool)
    for start in range(0, len(examples), batch_size):
        p_chunk, a_chunk = prompts[start : start + batch_size], answers[start : start + batch_size]
        width = max(len(p) + len(a) for p, a in zip(p_chunk, a_chunk))
        tokens = torch.full((len(p_chunk), width), eos, dtype=torch.long)
        want = torch.full_like(tokens, -1)  # want[i, j]: the token expected as the prediction at position j
        for i, (p, a) in enumerate(zip(p_chunk, a_chunk)):
            tokens[i, : len(p) + len(a)] = torch.tensor(p + a)
            want[i, len(p) - 1 : len(p) + len(a) - 1] = torch.tensor(a)
        if compact:
            logits = model(lookup[tokens].to(model.cfg.device))
        else:
            resid = model(tokens.to(model.cfg.device), stop_at_layer=model.cfg.n_layers)
            logits = model.ln_final(resid) @ model.W_U[:, rows_t] + model.b_U[rows_t]
        pred = rows_t[logits.argmax(-1).cpu()]
        hit = (pred == want) | (want < 0)
        idx = torch.arange(len(p_chunk))
        first[start : start + len(p_chunk)] = hit[idx, torch.tensor([len(p) - 1 for p in p_chunk])]
        full[start : start + len(p_chunk)] = hit.all(-1)
    out = {}
    for rel in RELATIONS:
        sel = torch.tensor([e.concept == rel for e in examples])
        out[rel] = {"first_token": first[sel].float().mean().item(), "full": full[sel].float().mean().item()}
    out["all"] = {"first_token": first.float().mean().item(), "full": full.float().mean().item()}
    return out


def evaluate(
    model, world: BpeBioWorld, n_people: int | None = None, max_examples: int | None = 3000, compact: bool = False
) -> dict:
    """`answer_accuracy` on every set of `EVAL_SETS` (at most `n_people` people per group, `max_examples` each)."""
    tok = load_gpt2_tokenizer()
    rows = world.vocabulary_ids(tok)
    return {
        s: answer_accuracy(model, tok, eval_examples(world, s, n_people, max_examples), rows, compact)
        for s in EVAL_SETS
    }


# ---- training -----------------------------------------------------------------------------
def train_bpe_model(
    world: BpeBioWorld,
    out_dir: str | Path,
    n_layers: int = 6,
    d_model: int = 128,
    d_head: int = 32,
    n_ctx: int = 256,
    steps: int = 3000,
    lr: float = 2e-3,
    min_lr_frac: float = 0.1,
    warmup: int = 200,
    weight_decay: float = 0.01,
    grad_clip: float = 1.0,
    batch_size: int = 16,
    seed: int = 0,
    threads: int = 2,
    checkpoint_every: int = 200,
    eval_every: int = 200,
    eval_people: int = 200,
    eval_examples_max: int = 600,
    final_examples_max: int = 3000,
    keep_checkpoints: bool = True,
    progress: bool = True,
    device: str = "cpu",
    bf16: bool = False,
):
    """Train the GPT-2-shaped model from scratch on `world` on `device`; resumable from `out_dir/checkpoints`.
    With `bf16`, the training forward runs under bf16 autocast (weights, optimiser and evaluations stay fp32).

    Writes the full-vocabulary model in compact storage (`save_transformer(..., vocab_rows=...)`), `world.json`, `train_log.jsonl`
    (periodic evaluations on `eval_examples_max` prompts of `eval_people` people per group) and `eval.json` (`final_examples_max` prompts of every set, over every person) into `out_dir`, and
    returns the model (on the CPU). The same seed gives the same weights, also across an interruption (same `threads`
    and device).
    """
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = Path(out_dir)
        ckpt_dir = out / CHECKPOINT_DIR
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        world.save(out / WORLD_FILE)
        tokenizer = load_gpt2_tokenizer()
        rows = world.vocabulary_ids(tokenizer)
        lookup = vocab_lookup(rows)
        cfg = gpt2_config(n_layers, d_model, d_head, n_ctx, d_vocab=len(rows))
        torch.manual_seed(seed)
        compact = build_model(cfg, device=device)
        opt = torch.optim.AdamW(compact.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)
        settings = dict(seed=seed, steps=steps, batch_size=batch_size, lr=lr, warmup=warmup, min_lr_frac=min_lr_frac)
        settings.update(weight_decay=weight_decay, grad_clip=grad_clip, bf16=bf16)
        meta = checkpoint.fingerprint(settings, cfg=cfg, world=world.params())
        step, epoch, batch, wall = _load_checkpoint(ckpt_dir, compact, opt, meta, device)
        _log_as_of(out / LOG_FILE, step)
        data = batches(world, tokenizer, lookup, seed, n_ctx, batch_size, epoch, batch)
        bar = tqdm(total=steps, initial=step, desc="bpe model", disable=not progress)
        compact.train()
        t0 = time.time() - wall
        while step < steps:
            epoch, batch, tokens, target = next(data)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, steps, lr, warmup, min_lr_frac)
            loss = train_step(compact, opt, tokens.to(device), target.to(device), grad_clip, bf16)
            step += 1
            bar.update(1)
            bar.set_postfix(loss=f"{loss.item():.3f}", epoch=epoch)
            if step % eval_every == 0 or step == steps:
                compact.eval()
                acc = evaluate(compact, world, eval_people, eval_examples_max, compact=True)
                compact.train()
                row = {"step": step, "epoch": epoch, "loss": loss.item(), "wall_s": round(time.time() - t0, 1)}
                with open(out / LOG_FILE, "a") as f:
                    f.write(json.dumps({**row, **acc}) + "\n")
                bar.set_postfix(
                    {"loss": f"{loss.item():.3f}", **{s: f"{acc[s]['all']['full']:.3f}" for s in EVAL_SETS}}
                )
            if step % checkpoint_every == 0 or step == steps:
                _save_checkpoint(ckpt_dir, compact, opt, meta, step, epoch, batch, time.time() - t0)
        bar.close()
        model = expand_vocab(compact.cpu().eval(), rows, VOCAB_SIZE, tokenizer)
        save_transformer(model, out, vocab_rows=rows)
        model = load_transformer(out)
        (out / EVAL_FILE).write_text(json.dumps(evaluate(model, world, None, final_examples_max), indent=1))
        if not keep_checkpoints:
            shutil.rmtree(ckpt_dir)
        return model
    finally:
        torch.set_num_threads(previous_threads)


def load_bpe_model(path: str | Path | None = None, device: str = "cpu"):
    """The trained GPT-2-shaped model (default: the one shipped in align_lens/worlds/data/bio_bpe_model)."""
    return load_transformer(path or DATA_DIR, device=device)


def load_bpe_world(path: str | Path | None = None) -> BpeBioWorld:
    """The world a saved model was trained on, rebuilt from its world.json."""
    path = Path(path or DATA_DIR) / WORLD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path} not found; it is written by train_bpe_model next to the model.")
    return BpeBioWorld.load(path)
