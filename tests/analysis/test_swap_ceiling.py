"""Full last-token interchange: the ceiling of any single-position swap edit."""

from __future__ import annotations

import pytest

from align_lens.analysis.swap_ceiling import interchange_ceiling


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
