"""What reduced precision while gathering changes in Stage 2's binding, fidelity and swaps (issue 13, item 2).

On the shipped model at the demo's hook, the demo's activations (biography + question tokens, the labelled
train / held-out prompts) of the first `--people` people are gathered into activation stores four ways:
    fp32         fp32 forward, fp32 storage (the reference)
    bf16-fwd     bf16 autocast forward, fp32 storage
    bf16-store   fp32 forward, bf16 storage
    fp16-store   fp32 forward, fp16 storage
One Stage-1 SAE is trained once on the fp32 tokens (fixed seed); Stage 2 (`align`, fp32 weights: the stores
are streamed and cast up) runs from each variant's stores with the same seed, and `evaluate` measures it on
that variant's activations (swaps at one fixed α run the model in fp32).

Usage: python benchmarks/bench_precision.py [--people 200] [--alpha 1.25] [--swap-items 10] [--repeats 3] [--out DIR]
Prints one row per variant: gather wall time (fastest of --repeats), store size, max |Δ| and ‖Δ‖/‖fp32‖ of the
token + train activations, ‖ΔW_dec‖/‖W_dec‖ of the aligned SAE against fp32's, held-out binding (on the variant's
and on the fp32 activations), explained variance on tokens, exact swap success at α; ratios to fp32 in brackets.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from align_lens.activations.store import write_ontology_store, write_store
from align_lens.evals.evaluate import EvalConfig, evaluate
from align_lens.training.config import Runtime
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DemoConfig, corpus_texts

VARIANTS = {  # name: (autocast of the forward, stored dtype)
    "fp32": (None, "float32"),
    "bf16-fwd": ("bfloat16", "float32"),
    "bf16-store": (None, "bfloat16"),
    "fp16-store": (None, "float16"),
}


def gather(root: Path, model, ontology, texts: list[str], hook: str, autocast: str | None, dtype: str):
    """The variant's three stores (tokens, train, held-out), the wall seconds and the bytes on disk."""
    kw = {"autocast": autocast, "dtype": dtype}
    t = time.perf_counter()
    stores = {
        "tokens": write_store(root / "tokens", model, texts, hook, position=None, **kw),
        "train": write_ontology_store(root / "train", model, ontology, hook, "train", **kw),
        "heldout": write_ontology_store(root / "heldout", model, ontology, hook, "heldout", **kw),
    }
    seconds = time.perf_counter() - t
    size = sum(f.stat().st_size for f in root.rglob("*.safetensors"))
    return stores, seconds, size


def gather_best_of(root: Path, repeats: int, *args):
    """`gather` into `repeats` fresh folders; the last stores, the fastest wall time, the size."""
    runs = [gather(root / f"run{i}", *args) for i in range(repeats)]
    return runs[-1][0], min(r[1] for r in runs), runs[-1][2]


def diff(x: torch.Tensor, ref: torch.Tensor) -> tuple[float, float]:
    """(max |x − ref|, ‖x − ref‖ / ‖ref‖) over every row."""
    d = x - ref
    return float(d.abs().max()), float(d.norm() / ref.norm())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--people", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=1.25, help="swap strength (delta mode), the demo's best α")
    ap.add_argument("--swap-items", type=int, default=10, help="base prompts per source concept")
    ap.add_argument("--stage1-steps", type=int, default=DemoConfig().stage1.steps)
    ap.add_argument("--repeats", type=int, default=3, help="gathers per variant; the fastest is reported")
    ap.add_argument("--out", default=None, help="store folder (default: a temporary one)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    demo = DemoConfig(n_people=args.people, seed=args.seed)
    hook = demo.hook_name
    model = load_base_model()
    world = load_base_world()
    ontology = world.ontology(args.people)
    bios, questions = corpus_texts(world, args.people, args.seed)
    tmp = tempfile.TemporaryDirectory() if args.out is None else None
    root = Path(args.out or tmp.name)

    rows = {}
    acts = {}
    for name, (autocast, dtype) in VARIANTS.items():
        stores, seconds, size = gather_best_of(
            root / name, args.repeats, model, ontology, bios + questions, hook, autocast, dtype
        )
        acts[name] = {k: s.read_all().float() for k, s in stores.items()}
        rows[name] = {"gather_s": seconds, "store_MB": size / 1e6, "stores": stores}
        print(f"gathered {name}: {seconds:.1f} s, {size / 1e6:.1f} MB", flush=True)

    ref = acts["fp32"]
    corpus = torch.cat([ref["tokens"], ref["train"]])
    batch_size = min(demo.stage1.batch_size, len(corpus))
    options = replace(demo.stage1, steps=args.stage1_steps, batch_size=batch_size, hook_name=hook)
    t = time.perf_counter()
    stage1 = pretrain_sae(corpus, replace(options, runtime=Runtime(seed=args.seed)))
    print(f"stage 1 (fp32 tokens, {args.stage1_steps} steps): {time.perf_counter() - t:.1f} s", flush=True)

    align_cfg = replace(demo.align, hook_name=hook, runtime=Runtime(seed=args.seed, progress=False))
    eval_cfg = EvalConfig(alphas=(args.alpha,), swap_items=args.swap_items, task_accuracy=False, seed=args.seed)
    for name, row in rows.items():
        a = acts[name]
        row["max_abs"], row["rel"] = diff(
            torch.cat([a["tokens"], a["train"]]), torch.cat([ref["tokens"], ref["train"]])
        )
        t = time.perf_counter()
        aligned = align(
            stage1,
            ontology,
            model=model,
            activations=row["stores"]["train"],
            unlabelled=row["stores"]["tokens"],
            config=align_cfg,
        )
        row["align_s"] = time.perf_counter() - t
        if name == "fp32":
            ref_w_dec = aligned.W_dec.detach().clone()
        row["W_dec_rel"] = float((aligned.W_dec.detach() - ref_w_dec).norm() / ref_w_dec.norm())
        res = evaluate(
            model, aligned, ontology, eval_cfg, tokens=a["tokens"], acts={"train": a["train"], "heldout": a["heldout"]}
        )
        ref_res = evaluate(
            model,
            aligned,
            ontology,
            EvalConfig(swaps=False, task_accuracy=False),
            tokens=ref["tokens"],
            acts={"train": ref["train"], "heldout": ref["heldout"]},
        )
        row["binding"] = res["binding_heldout"]
        row["binding_on_fp32"] = ref_res["binding_heldout"]
        row["ev"] = res["explained_variance_aligned"]
        row["swap"] = res["swap_exact_best"]
        row["trials"] = res["swap_trials"]
        print(f"{name}: aligned in {row['align_s']:.1f} s, evaluated", flush=True)

    base = rows["fp32"]
    cols = ["gather_s", "store_MB", "max_abs", "rel", "W_dec_rel", "binding", "binding_on_fp32", "ev", "swap"]
    print(f"\npeople {args.people}, hook {hook}, α {args.alpha}, swap trials {base['trials']} per variant")
    print("| variant | " + " | ".join(cols) + " |")
    print("|---" * (len(cols) + 1) + "|")
    for name, row in rows.items():
        cells = []
        for c in cols:
            v = row[c]
            ratio = f" ({v / base[c]:.3f}×)" if c not in ("max_abs", "rel", "W_dec_rel") and base[c] else ""
            cells.append(f"{v:.5g}{ratio}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
