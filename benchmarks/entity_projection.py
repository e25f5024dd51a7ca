"""Does keeping the swap edit out of the entity subspace help? (issue 12, a fix that was tried and failed)

Usage: python benchmarks/entity_projection.py --stage1-cache DIR   (DIR from benchmarks/swap_protocol.py)

Stage 2 (demo AlignConfig; unlabelled rows: 300 train people's biography tokens + every 4th labelled row) on the
train people of `people_split(seed 0)`; the entity subspace = top-r right singular vectors of the last-token
activations centred per (relation, template); the delta slot edit d is replaced by d − Q Qᵀ d. Exact swap success on
the validation people's held-out templates, 20 base prompts per source concept.
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch
from sae_lens import SAE

from align_lens.activations.gather import gather_activations, gather_token_activations
from align_lens.evals.selection import of_people, people_split, restrict
from align_lens.interventions.editors import ALPHAS, Editor, slot_editor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.training.stage2 import align
from align_lens.worlds.base_model import load_base_model, load_base_world
from align_lens.worlds.demo import DemoConfig


class ProjectedEditor(Editor):
    """`base`'s edit with its component in span(Q) removed."""

    unit = "slot_scale"
    mode = "projected"

    def __init__(self, base: Editor, q: torch.Tensor):
        self.base, self.q, self.names, self.hook_name = base, q, base.names, base.hook_name

    def __call__(self, h, src, tgt, alpha):
        d = self.base(h, src, tgt, alpha) - h
        return h + d - (d @ self.q.T) @ self.q


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stage1-cache", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = DemoConfig(progress=False)
    hook = cfg.hook_name
    model, world = load_base_model(None), load_base_world(None)
    full = world.ontology()
    people = people_split(full, 100, 100, 0)
    train = restrict(full, people["train"])
    acts = gather_activations(model, train.prompts("train"), hook)
    bios = [d.text for d in world.documents(0) if d.loss_from == 0]
    bio_of = {p.id: b for p, b in zip(world.people, bios)}
    bio_acts = gather_token_activations(model, [bio_of[p] for p in sorted(people["train"])][:300], hook)
    ac = replace(cfg.align, hook_name=hook, runtime=cfg.runtime())
    stage1 = SAE.load_from_disk(args.stage1_cache)
    aligned = align(
        stage1, train, model=model, activations=acts, unlabelled=torch.cat([bio_acts, acts[::4]]), config=ac
    )
    groups: dict[tuple, list[int]] = {}
    for i, e in enumerate(train.select("train")):
        groups.setdefault((e.concept, e.template), []).append(i)
    centred = acts.clone()
    for idx in groups.values():
        centred[idx] -= acts[idx].mean(0)
    _, sv, v = torch.linalg.svd(centred, full_matrices=False)
    share = (sv**2 / (sv**2).sum())[:8]
    print("variance share of the top 8 entity directions:", ", ".join(f"{x:.3f}" for x in share.tolist()))
    val = of_people(full, people["val"], "heldout")
    base = slot_editor(aligned, "delta")
    print("| entity dims removed | " + " | ".join(f"α {a}" for a in ALPHAS) + " |")
    print("|---|" + "---|" * len(ALPHAS))
    for r in (0, 8, 32, 64):
        ed = base if r == 0 else ProjectedEditor(base, v[:r])
        res = evaluate_swaps(model, ed, val, ALPHAS, max_items=20, lookup=full)
        print(f"| {r} | " + " | ".join(f"{x:.3f}" for x in res.success["exact"]) + " |", flush=True)


if __name__ == "__main__":
    main()
