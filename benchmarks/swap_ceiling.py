"""Swap ceiling of a last-token edit: full interchange of the last-token residual (`analysis.swap_ceiling`).

Usage: python benchmarks/swap_ceiling.py
Held-out-template prompts of people P0000–P0199, 600 trials per row, shipped model.
"""

from __future__ import annotations

import torch

from align_lens.analysis.swap_ceiling import interchange_ceiling
from align_lens.worlds.base_model import load_base_model, load_base_world


def main() -> None:
    torch.set_num_threads(1)
    model, world = load_base_model(None), load_base_world(None)
    held = [e for e in world.ontology().select("heldout") if int(e.entity[1:]) < 200]
    print("| hook | source prompt | answer = e's B value | = source person's B value | = e's A value | trials |")
    print("|---|---|---|---|---|---|")
    for hook in ("blocks.0.hook_resid_post", "blocks.1.hook_resid_post"):
        for who in ("same", "other"):
            r = interchange_ceiling(model, held, hook, who, max_trials=600)
            print(
                f"| {hook} | {who} person | {r['gold']:.3f} | {r['source_person']:.3f} | {r['kept']:.3f} | {r['n']} |"
            )


if __name__ == "__main__":
    main()
