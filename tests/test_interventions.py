"""Swap, interchange and patching interventions, on the algebra and on a trained base model.

The `trained` fixture lives in conftest.py.
"""

from __future__ import annotations

import pytest
import torch

from align_lens import interventions as iv
from align_lens.activations.gather import gather_activations


# ---- algebra (no model) -------------------------------------------------------------------
def test_delta_edit_algebra(trained):
    al = trained["aligned"]
    h = trained["heldout_acts"][:8]
    names = al.cfg.concept_names
    a, b = names[0], names[3]
    z = al.encode(h).detach()
    ia, ib = al.concept_index(a), al.concept_index(b)
    alpha = 1.7
    got = iv.edit_residual(al, h, a, b, alpha, "delta")
    scale = al.cfg.concept_scales[3]
    want = h + (alpha * scale - z[:, ib, None]) * al.W_dec[ib] - z[:, ia, None] * al.W_dec[ia]
    torch.testing.assert_close(got, want.detach(), atol=1e-4, rtol=1e-4)
    steer = iv.edit_residual(al, h, a, b, 0.5, "steer")
    d = al.W_dec[ib] / al.W_dec[ib].norm()
    torch.testing.assert_close(steer, (h + 0.5 * h.norm(dim=-1, keepdim=True) * d).detach(), atol=1e-4, rtol=1e-4)


def test_unknown_mode_and_concept(trained):
    with pytest.raises(ValueError):
        iv.swap_hooks(trained["aligned"], "BIRTH_DATE", "MAJOR", 1.0, mode="nope")
    with pytest.raises(KeyError):
        iv.swap_hooks(trained["aligned"], "BIRTH_DATE", "NOPE", 1.0)


def _quiet_pair(trained, example):
    """Two concepts other than the example's whose slots are both 0 at its last token."""
    al, model = trained["aligned"], trained["model"]
    h = gather_activations(model, [example.prompt], trained["hook"])
    z = al.concept_acts(h)[0]
    quiet = [n for i, n in enumerate(al.cfg.concept_names) if z[i] == 0 and n != example.concept]
    assert len(quiet) >= 2, z
    return quiet[0], quiet[1]


def test_delta_zero_edit_leaves_logits_unchanged(trained):
    model = trained["model"]
    ex = trained["heldout_sample"][0]
    a, b = _quiet_pair(trained, ex)  # zeroing A and setting B to 0 changes no latent
    toks = model.to_tokens(ex.prompt)
    clean = model(toks)
    edited = model.run_with_hooks(toks, fwd_hooks=iv.swap_hooks(trained["aligned"], a, b, 0.0, "delta"))
    torch.testing.assert_close(edited, clean, atol=1e-5, rtol=0)


def test_paper_mode_differs_by_exactly_the_reconstruction_error(trained):
    model, al, hook = trained["model"], trained["aligned"], trained["hook"]
    ex = trained["heldout_sample"][1]
    a, b = _quiet_pair(trained, ex)
    toks = model.to_tokens(ex.prompt)
    seen = {}

    def grab(x, hook):
        seen["h"] = x.detach().clone()

    model.run_with_hooks(toks, fwd_hooks=[(hook, grab)])
    clean_h = seen["h"]
    model.run_with_hooks(toks, fwd_hooks=iv.swap_hooks(al, a, b, 0.0, "paper") + [(hook, grab)])
    diff = seen["h"] - clean_h
    error = (al(clean_h[0, -1]) - clean_h[0, -1]).detach()  # reconstruction − input
    torch.testing.assert_close(diff[0, -1], error, atol=1e-5, rtol=1e-5)
    assert diff[0, :-1].abs().max() == 0  # only the last position is touched


def _pick_swap(trained, source="MAJOR", target="EMPLOYER"):
    lookup = iv.answer_lookup(trained["ontology"])
    for e in trained["heldout_sample"]:
        if e.concept == source and lookup[(e.entity, target)] != e.answer:
            return e, lookup[(e.entity, target)]
    raise AssertionError("no example")


def test_generate_with_swap_hook_changes_the_answer(trained):
    model, al = trained["model"], trained["aligned"]
    ex, gold = _pick_swap(trained)
    with model.hooks(fwd_hooks=iv.swap_hooks(al, "MAJOR", "EMPLOYER", 2.0, "delta")):
        out = model.generate(ex.prompt, max_new_tokens=2, do_sample=False, verbose=False, use_past_kv_cache=True)
    clean = model.generate(ex.prompt, max_new_tokens=2, do_sample=False, verbose=False)
    assert ex.answer in clean and ex.answer not in out
    employers = {a for (_, c), a in iv.answer_lookup(trained["ontology"]).items() if c == "EMPLOYER"}
    new = out[len(ex.prompt) :].split()[0]
    assert new in employers  # now names an employer (usually this person's: see test_evaluate_swaps)
    # the KV-cached generate edits only the prefill pass: same result as the batched decoder without cache
    res = iv.evaluate_swaps(model, al, [ex], alphas=(2.0,), lookup=trained["ontology"], n_show=5)
    row = next(r for r in res.examples if r["target"] == "EMPLOYER")
    assert row["outputs"][2.0].split()[0] == new


def test_hooks_agree_with_batched_decoder(trained):
    """swap_hooks + run_with_hooks and the batched right-padded decoder give the same first token."""
    model, al = trained["model"], trained["aligned"]
    items = [e for e in trained["heldout_sample"] if e.concept == "MAJOR"][:3]
    from align_lens.evals.decoding import greedy_decode

    ed = iv.SlotEditor(al, "delta")
    src = torch.full((len(items),), ed.index("MAJOR"))
    tgt = torch.full((len(items),), ed.index("UNIVERSITY"))
    gens = greedy_decode(model, [e.prompt for e in items], 1, trained["hook"], lambda h, r: ed(h, src[r], tgt[r], 1.5))
    for e, g in zip(items, gens):
        logits = model.run_with_hooks(
            model.to_tokens(e.prompt), fwd_hooks=iv.swap_hooks(al, "MAJOR", "UNIVERSITY", 1.5)
        )
        assert int(logits[0, -1].argmax()) == g[0]


def test_evaluate_swaps_on_trained_model(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    res = iv.evaluate_swaps(model, al, ont.select("heldout"), alphas=(0.0, 1.0), max_items=4, lookup=ont)
    c = len(ont.names)
    assert res.counts["n_items"] == 4 * c
    assert res.counts["n_trials"] + res.counts["skipped_same_answer"] + res.counts["skipped_missing"] == 4 * c * (c - 1)
    assert res.clean_accuracy > 0.9
    assert res.success["exact"][1] > 0.3 and res.success["exact"][1] > res.success["exact"][0] + 0.2
    assert res.type_target[1] >= res.success["exact"][1] and res.kept_source[1] < 0.2
    for s in iv.SCORERS:
        assert len(res.success[s]) == 2 and len(res.pair[s][0]) == c
        assert res.success["lenient"][1] >= res.success["exact"][1]
    assert all(torch.isnan(torch.tensor(res.pair["exact"][1][i][i])) for i in range(c))
    assert res.examples and set(res.examples[0]["outputs"]) == {0.0, 1.0}
    assert res.best("exact")[0] == 1.0
    paper = iv.evaluate_swaps(model, al, ont.select("heldout"), alphas=(1.0,), mode="paper", max_items=4, lookup=ont)
    assert paper.success["exact"][0] > 0.3 and paper.mode == "paper"
    d = res.to_dict()
    assert d["mode"] == "delta" and len(res.table()) == 2


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
