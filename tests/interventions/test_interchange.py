"""Slot interchange (patch_slots, RAVEL scores) and residual patching on a trained base model."""

from __future__ import annotations

import pytest

from align_lens import interventions as iv


def test_patch_slots_moves_the_relation(trained):
    model, al = trained["model"], trained["aligned"]
    lookup = iv.answer_lookup(trained["ontology"])
    held = trained["ontology"].select("heldout")
    bases = [e for e in held if e.concept == "UNIVERSITY"][:8]
    sources = [e for e in held if e.concept == "MAJOR" and e.entity not in {b.entity for b in bases}][:8]
    out = iv.patch_slots(model, al, [e.prompt for e in bases], [e.prompt for e in sources])
    assert out["base"] == [e.answer for e in bases]
    want = [lookup[(e.entity, "MAJOR")] for e in bases]
    majors = {a for (_, c), a in lookup.items() if c == "MAJOR"}
    assert sum(p != b for p, b in zip(out["patched"], out["base"])) >= 6  # the answer moves away from UNIVERSITY
    assert sum(p in majors for p in out["patched"]) >= 6  # to a major (the source's relation)
    assert sum(p == w for p, w in zip(out["patched"], want)) >= 4  # mostly the base person's own major
    assert len(out["source_slots"]) == 8 and len(out["source_slots"][0]) == 6
    single = iv.patch_slots(model, al, [bases[0].prompt], [bases[0].prompt], concept="UNIVERSITY")
    assert single["patched"] == single["base"]  # copying a slot onto itself changes nothing


def test_ravel_scores(trained):
    r = iv.ravel_scores(
        trained["model"],
        trained["aligned"],
        trained["ontology"].select("heldout"),
        lookup=trained["ontology"],
        max_items=3,
    )
    assert r["cause"] > 0.3 and r["isolation"] > 0.8 and r["entity_leak"] < 0.2
    assert r["n_isolation"] == 3 * 6 and 0 < r["n_cause"] <= 3 * 6 * 5


def test_residual_patching_recovers_clean_at_the_changed_token(trained):
    model = trained["model"]
    ex = trained["heldout_sample"][2]
    clean = model.to_tokens(ex.prompt)
    other = next(e for e in trained["heldout_sample"] if e.entity != ex.entity and e.template == ex.template)
    other_toks = model.to_tokens(other.prompt)
    p = int((clean[0, : other_toks.shape[1]] != other_toks[0, : clean.shape[1]]).nonzero()[0, 0])
    corrupt = clean.clone()
    corrupt[0, p] = other_toks[0, p]  # one changed name token
    target = int(model(clean)[0, -1].argmax())

    def metric(logits):
        return logits[0, -1].log_softmax(-1)[target]

    out = iv.residual_patching(model, clean, corrupt, metric)
    assert out.shape == (model.cfg.n_layers, clean.shape[1])
    clean_score = float(metric(model(clean)).detach())
    assert float(out[0, p]) == pytest.approx(clean_score, abs=1e-4)  # patching the changed token at layer 0
    untouched = [q for q in range(clean.shape[1]) if q < p]
    for q in untouched:  # positions before the change carry identical activations: patching them is a no-op
        assert float(out[0, q]) == pytest.approx(float(metric(model(corrupt)).detach()), abs=1e-4)
