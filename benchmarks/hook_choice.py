"""Which hook should the swap edit act at? Measured on the VALIDATION people only (issue 12).

Usage: python benchmarks/hook_choice.py [--val-items 40] [--threads 1]

People split as in benchmarks/swap_protocol.py (seed 0: 800 train, 100 validation, 100 test). At every residual
hook of the shipped model, `resid_mid` (after attention, before the MLP) included:
  - the two-way variance split of the validation people's training-template last-token activations into relation,
    entity and interaction parts (`analysis.swap_ceiling.interaction_fraction`): one edit vector per relation pair
    can only be exact where the interaction is small;
  - DiffMean swaps (class means of the train people's last tokens; no SAE involved) on the validation people's
    held-out templates, exact full answer, best α of the grid, and the kept-A rate there.
The test people are not touched; the hook chosen here is the one benchmarks/swap_protocol.py reports on them.
"""

from __future__ import annotations

import argparse
import time

import torch

from align_lens.activations.gather import gather_activations
from align_lens.adapter import residual_hooks
from align_lens.analysis.baselines import diffmean_directions
from align_lens.analysis.swap_ceiling import interaction_fraction
from align_lens.evals.selection import of_people, people_split
from align_lens.interventions.editors import ALPHAS, DirectionEditor
from align_lens.interventions.swaps import evaluate_swaps
from align_lens.worlds.base_model import load_base_model, load_base_world


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--val-items", type=int, default=40, help="base prompts per source concept")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, world = load_base_model(None), load_base_world(None)
    full = world.ontology()
    names = full.names
    people = people_split(full, 100, 100, seed=0)
    train = of_people(full, people["train"], "train")[::4]
    labels = torch.tensor([names.index(e.concept) for e in train])
    val_train = of_people(full, people["val"], "train")
    val_held = of_people(full, people["val"], "heldout")
    print(
        "| hook | relation / entity / interaction share of the last-token variance (validation people) "
        "| DiffMean swap, exact, best α (validation) | kept A there | trials | s |"
    )
    print("|---|---|---|---|---|---|")
    for hook in residual_hooks(model, mid=True)[1:]:  # resid_pre 0 is the `A:` embedding: no relation
        t = time.perf_counter()
        split = interaction_fraction(
            gather_activations(model, [e.prompt for e in val_train], hook),
            [str(e.entity) for e in val_train],
            [e.concept for e in val_train],
        )
        means = diffmean_directions(gather_activations(model, [e.prompt for e in train], hook), labels, len(names))
        editor = DirectionEditor(means["means"], names, hook)
        sw = evaluate_swaps(model, editor, val_held, ALPHAS, max_items=args.val_items, lookup=full)
        alpha, best = sw.best("exact")
        kept = sw.kept_source[list(sw.alphas).index(alpha)]
        print(
            f"| {hook} | {split['concept']:.3f} / {split['entity']:.3f} / {split['interaction']:.3f} "
            f"| {best:.3f} ({alpha}) | {kept:.3f} | {len(sw.trials)} | {time.perf_counter() - t:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
