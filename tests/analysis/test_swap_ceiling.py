"""Full last-token interchange: the ceiling of any single-position swap edit."""

from __future__ import annotations

import pytest
import torch

from align_lens.analysis.swap_ceiling import interaction_fraction, interchange_ceiling


def test_same_person_interchange_swaps_and_other_person_moves_the_entity(trained):
    model, hook = trained["model"], trained["hook"]
    held = [e for e in trained["ontology"].select("heldout") if e.entity in {"P0000", "P0001", "P0002", "P0003"}]
    same = interchange_ceiling(model, held, hook, "same", max_trials=40)
    assert same["n"] == 40 and same["gold"] > 0.9 and same["kept"] < 0.1
    other = interchange_ceiling(model, held, hook, "other", max_trials=40)
    assert other["gold"] + other["source_person"] + other["kept"] <= 1.0
    assert other["source_person"] > other["gold"]  # the entity travels in the last token's residual here
    with pytest.raises(ValueError, match="source_entity"):
        interchange_ceiling(model, held, hook, "nobody")


def test_interaction_fraction_separates_additive_from_entangled_codes():
    g = torch.Generator().manual_seed(0)
    ent_vecs, con_vecs = torch.randn(20, 16, generator=g), torch.randn(3, 16, generator=g)
    ents = [f"e{i}" for i in range(20) for _ in range(3) for _ in range(2)]  # two rows per cell
    cons = [f"c{j}" for _ in range(20) for j in range(3) for _ in range(2)]
    ei = torch.tensor([int(e[1:]) for e in ents])
    ci = torch.tensor([int(c[1:]) for c in cons])
    additive = ent_vecs[ei] + con_vecs[ci] + 0.01 * torch.randn(len(ei), 16, generator=g)
    split = interaction_fraction(additive, ents, cons)
    assert split["interaction"] < 1e-3 and split["n_entities"] == 20
    assert abs(split["concept"] + split["entity"] + split["interaction"] - 1) < 1e-6
    entangled = additive + 2 * torch.tanh(ent_vecs[ei] * con_vecs[ci])
    assert interaction_fraction(entangled, ents, cons)["interaction"] > 0.2
    with pytest.raises(ValueError, match="activations for"):
        interaction_fraction(additive[:5], ents, cons)
    with pytest.raises(ValueError, match="every concept"):
        interaction_fraction(additive[:2], ents[:2], cons[:2])
