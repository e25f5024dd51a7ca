"""Greedy decoding on the shipped GPT-2-shaped model (50,257-token vocabulary): the unembedding of one position per
row (`adapter.logits_at`) against the unembedding of every position (`model(tokens)`), in one run.

Usage: python benchmarks/bench_decode.py [--prompts 240] [--threads 1]
Decodes held-out-phrasing questions of the shipped world (batches of 64 right-padded prompts of different lengths,
the longest answer's length + 1 new tokens) both ways, checks that the generations are the same, and prints the
seconds of each and their ratio.
"""

from __future__ import annotations

import argparse
import time

import torch

from align_lens import adapter
from align_lens.evals import decoding
from align_lens.evals.decoding import greedy_decode, max_answer_len
from align_lens.worlds.bpe_model import load_bpe_model, load_bpe_world


def every_position(model, tokens, positions):
    """The baseline: logits of every position, then the wanted one per row."""
    return model(tokens)[torch.arange(tokens.shape[0], device=tokens.device), positions]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--prompts", type=int, default=240)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, world = load_bpe_model(), load_bpe_world()
    examples = world.ontology("phrasings", n_people=60).examples
    examples = [e for e in examples if e.split == "heldout"][: args.prompts]
    prompts = [e.prompt for e in examples]
    new = max_answer_len(model, [e.answer for e in examples]) + 1
    seconds, outputs = {}, {}
    for name, logits_at in (("every position", every_position), ("one position (logits_at)", adapter.logits_at)):
        decoding.adapter.logits_at = logits_at  # the one call greedy_decode makes for its next-token logits
        t = time.perf_counter()
        outputs[name] = greedy_decode(model, prompts, max_new_tokens=new)
        seconds[name] = time.perf_counter() - t
    decoding.adapter.logits_at = adapter.logits_at
    base, fast = seconds
    same = outputs[base] == outputs[fast]
    print(f"{len(prompts)} prompts, {new} new tokens at most, {args.threads} thread(s); same generations: {same}")
    for name, s in seconds.items():
        print(f"  {name:<26} {s:7.2f} s")
    print(f"ratio one position / every position: {seconds[fast] / seconds[base]:.2f}")
    if not same:
        raise SystemExit("the two decoders disagree")


if __name__ == "__main__":
    main()
