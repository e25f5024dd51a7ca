"""Swap hooks, batched swap evaluation and reproducible swap trials, on a trained base model.

The `trained` fixture lives in conftest.py.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from dataclasses import replace

import pytest
import torch

from align_lens import interventions as iv
from align_lens.activations.gather import gather_activations
from align_lens.adapter import stop_ids, tokenize
from align_lens.evals.decoding import decode_tokens
from align_lens.interventions import swaps as swaps_module
from align_lens.interventions.swaps import edit_hooks
from align_lens.ontology import Example


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


def test_generate_under_swap_hooks_matches_evaluate_swaps(trained):
    """What is measured is what ships: `model.generate` (prefill-only edit, KV cache) under `swap_hooks` gives the
    tokens `evaluate_swaps` scored, trial by trial and for a batch of prompts of different lengths with a
    different swap on each row (per-row concept indices)."""
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    trials, pairs, lengths = [], set(), set()
    for t in iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, ont, seed=1):
        n = len(tokenize(model, [t.prompt])[0])
        if len(trials) < 6 and (t.source, t.target) not in pairs and (n not in lengths or len(lengths) >= 3):
            pairs.add((t.source, t.target))
            lengths.add(n)
            trials.append(t)
    toks = tokenize(model, [t.prompt for t in trials])
    assert len({len(x) for x in toks}) >= 3  # prompts of different lengths share one right-padded batch
    alpha, max_new = 2.0, 6
    res = iv.evaluate_swaps(model, al, trials=trials, alphas=(alpha,), lookup=ont, max_new_tokens=max_new)
    measured = [row["generated"] for row in res.outputs]
    assert len(set(measured)) > 1
    stops = stop_ids(model)

    def cut(ids: list[int]) -> str:
        ends = [i for i, x in enumerate(ids) if x in stops]
        return decode_tokens(model, ids[: ends[0]] if ends else ids)

    one_by_one = []
    for t, x in zip(trials, toks):
        with model.hooks(fwd_hooks=iv.swap_hooks(al, t.source, t.target, alpha)):
            out = model.generate(x[None], max_new_tokens=max_new, do_sample=False, verbose=False)
        one_by_one.append(cut(out[0, len(x) :].tolist()))
    assert one_by_one == measured

    ed = iv.slot_editor(al, "delta")
    src = torch.tensor([ed.index(t.source) for t in trials])
    tgt = torch.tensor([ed.index(t.target) for t in trials])
    prompts = [t.prompt for t in trials]
    with model.hooks(fwd_hooks=iv.swap_hooks(al, src, tgt, alpha)):  # last prompt token: -1 under left padding
        out = model.generate(prompts, max_new_tokens=max_new, do_sample=False, verbose=False, return_type="tokens")
    width = model.to_tokens(prompts, padding_side="left").shape[1]
    batched = [cut(row[width:].tolist()) for row in out]
    assert batched == measured


def test_offset_edits_a_token_before_the_last_as_generate_does(trained):
    """`evaluate_swaps(offset=-1)` edits the token before the last prompt token: the same tokens as
    `model.generate` under `swap_hooks(position=-2)`, and not those of the last-token edit."""
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    trials = iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, ont, seed=1)[:8]
    alpha, max_new = 3.0, 6
    at_last = iv.evaluate_swaps(model, al, trials=trials, alphas=(alpha,), max_new_tokens=max_new)
    before = iv.evaluate_swaps(model, al, trials=trials, alphas=(alpha,), max_new_tokens=max_new, offset=-1)
    measured = [row["generated"] for row in before.outputs]
    assert measured != [row["generated"] for row in at_last.outputs]
    stops = stop_ids(model)
    one_by_one = []
    for t in trials:
        x = tokenize(model, [t.prompt])[0]
        with model.hooks(fwd_hooks=iv.swap_hooks(al, t.source, t.target, alpha, position=-2)):
            out = model.generate(x[None], max_new_tokens=max_new, do_sample=False, verbose=False)[0, len(x) :]
        ends = [i for i, tok in enumerate(out.tolist()) if tok in stops]
        one_by_one.append(decode_tokens(model, out[: ends[0]].tolist() if ends else out.tolist()))
    assert one_by_one == measured
    with pytest.raises(ValueError, match="offset"):
        iv.evaluate_swaps(model, al, trials=trials, alphas=(alpha,), offset=1)


def test_a_trials_own_offset_moves_its_edit_as_the_shared_offset_does(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    trials = iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, ont, seed=1)[:8]
    run = functools.partial(iv.evaluate_swaps, model, al, alphas=(3.0,), max_new_tokens=6)
    at_last, shared = run(trials=trials), run(trials=trials, offset=-1)
    mixed = [replace(t, offset=-1) if i % 2 else t for i, t in enumerate(trials)]  # every other trial moved
    own = [row["generated"] for row in run(trials=mixed).outputs]
    expected = [(shared if i % 2 else at_last).outputs[i]["generated"] for i in range(len(trials))]
    assert own == expected and expected != [row["generated"] for row in at_last.outputs]
    with pytest.raises(ValueError, match="offset"):
        run(trials=[replace(trials[0], offset=1)])


def test_span_edits_every_position_from_the_given_one_on(trained):
    """`edit_hooks(span=True)` edits positions ≥ each row's `position`; without span only that position."""
    model, hook = trained["model"], trained["hook"]
    prompts = [e.prompt for e in trained["heldout_sample"][:2]]
    toks = model.to_tokens(prompts, padding_side="right")
    pos = torch.tensor([1, toks.shape[1] - 2])
    seen = {}

    def record(x, hook):
        seen["x"] = x.detach().clone()

    model.run_with_hooks(toks, fwd_hooks=[(hook, record)])
    clean = seen["x"]
    cols = torch.arange(toks.shape[1])[None]
    for span, want in ((False, cols == pos[:, None]), (True, cols >= pos[:, None])):
        edit = edit_hooks(hook, lambda h: h + 1.0, pos, prefill_only=False, span=span)
        model.run_with_hooks(toks, fwd_hooks=[*edit, (hook, record)])
        assert torch.equal((seen["x"] - clean).abs().sum(-1) > 0, want)


def test_start_edits_from_a_fixed_position_like_a_per_trial_offset(trained):
    """`evaluate_swaps(start=1, span=True)` edits every position from the first after BOS: the same generations as
    trials whose own offset puts the span edit there; `start` without `span` is refused."""
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    trials = iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, ont, seed=2)[:8]
    run = functools.partial(iv.evaluate_swaps, model, al, alphas=(2.0,), lookup=ont, max_new_tokens=4, span=True)
    from_start = run(trials=trials, start=1)
    shifted = [replace(t, offset=2 - len(tokenize(model, [t.prompt])[0])) for t in trials]
    generated = [r["generated"] for r in from_start.outputs]
    assert generated == [r["generated"] for r in run(trials=shifted).outputs]
    assert generated != [r["generated"] for r in run(trials=trials).outputs]  # not the edit from the last token
    with pytest.raises(ValueError, match="start"):
        iv.evaluate_swaps(model, al, trials=trials, alphas=(2.0,), lookup=ont, start=1)


def test_generate_under_span_swap_hooks_matches_evaluate_swaps(trained):
    """With `span=True` the KV-cached `model.generate` edits each new position too, as the re-running decoder of
    `evaluate_swaps(span=True)` does: the same generations, trial by trial."""
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    trials = iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, ont, seed=1)[:8]
    alpha, max_new = 2.0, 6
    res = iv.evaluate_swaps(model, al, trials=trials, alphas=(alpha,), lookup=ont, max_new_tokens=max_new, span=True)
    stops = stop_ids(model)
    generated = []
    for t in trials:
        x = tokenize(model, [t.prompt])[0]
        with model.hooks(fwd_hooks=iv.swap_hooks(al, t.source, t.target, alpha, span=True)):
            out = model.generate(x[None], max_new_tokens=max_new, do_sample=False, verbose=False)
        ids = out[0, len(x) :].tolist()
        ends = [i for i, v in enumerate(ids) if v in stops]
        generated.append(decode_tokens(model, ids[: ends[0]] if ends else ids))
    assert generated == [row["generated"] for row in res.outputs]


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


def test_wilson_interval():
    from align_lens.interventions.swaps import wilson

    lo, hi = wilson(50, 100)
    assert lo < 0.5 < hi and hi - lo == pytest.approx(0.192, abs=0.01)
    assert wilson(8, 10) == pytest.approx((0.4902, 0.9433), abs=1e-4)  # the textbook Wilson score interval
    assert wilson(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson(10, 10)[1] == pytest.approx(1.0)
    assert all(map(math.isnan, wilson(0, 0)))


def test_sample_swap_trials_is_reproducible(trained):
    ont, names = trained["ontology"], trained["aligned"].cfg.concept_names
    held = ont.select("heldout")
    trials = iv.sample_swap_trials(held, names, lookup=ont, max_items=2, seed=3)
    assert trials == iv.sample_swap_trials(held, names, lookup=ont, max_items=2, seed=3)
    assert trials != iv.sample_swap_trials(held, names, lookup=ont, max_items=2, seed=4)
    assert {t.source for t in trials} == set(names) and all(t.source != t.target for t in trials)
    lookup = iv.answer_lookup(ont)
    assert all(lookup[(t.entity, t.target)] == t.gold != t.source_answer for t in trials)


def test_explicit_trials_reproduce_per_trial_outputs(trained):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    held = ont.select("heldout")
    res = iv.evaluate_swaps(model, al, held, alphas=(1.0, 2.0), max_items=2, lookup=ont, seed=3)
    assert res.trials == iv.sample_swap_trials(held, al.cfg.concept_names, lookup=ont, max_items=2, seed=3)
    assert len(res.outputs) == 2 * len(res.trials)
    for i, alpha in enumerate(res.alphas):  # the rates are the per-trial scores, averaged
        rows = [r for r in res.outputs if r["alpha"] == alpha]
        assert sum(r["exact"] for r in rows) / len(rows) == pytest.approx(res.success["exact"][i])
    some = res.to_dict()["trials"][::5]  # saved trials (plain dicts), a subset, in another batch layout
    again = iv.evaluate_swaps(model, al, trials=some, alphas=(2.0, 1.0), batch_size=3, lookup=ont)
    first = {(r["prompt"], r["target"], r["alpha"]): r for r in res.outputs}
    assert len(again.outputs) == 2 * len(some)
    for r in again.outputs:
        assert r == first[(r["prompt"], r["target"], r["alpha"])] | {"trial": r["trial"]}
    bad = [iv.SwapTrial("Q: x A:", "P0", "MAJOR", "NOPE", "a", "b")]
    with pytest.raises(KeyError, match="NOPE"):
        iv.evaluate_swaps(model, al, trials=bad)


@pytest.mark.parametrize("use_error_term", [True, False])
def test_swaps_and_gathering_work_with_the_sae_attached_by_saelens(trained, use_error_term):
    """SAELens' HookedSAETransformer.add_sae replaces the hook point by the SAE: swap_hooks then edit the attached
    SAE's output, evaluate_swaps decodes through it, and gathering reads the residual the SAE receives."""
    model, al, hook = trained["model"], trained["aligned"], trained["hook"]
    ex, gold = _pick_swap(trained)
    with model.hooks(fwd_hooks=iv.swap_hooks(al, "MAJOR", "EMPLOYER", 2.0, "delta")):
        detached = model.generate(ex.prompt, max_new_tokens=2, do_sample=False, verbose=False)
    clean_h = gather_activations(model, [ex.prompt], hook)
    trials = iv.sample_swap_trials(trained["heldout_sample"], al.cfg.concept_names, trained["ontology"], 2, seed=0)
    before = iv.evaluate_swaps(model, al, trials=trials, alphas=(2.0,), lookup=trained["ontology"])
    model.add_sae(al, use_error_term=use_error_term)
    try:
        assert hook not in model.hook_dict  # the SAE took the hook point's place
        torch.testing.assert_close(gather_activations(model, [ex.prompt], hook), clean_h)
        with model.hooks(fwd_hooks=iv.swap_hooks(al, "MAJOR", "EMPLOYER", 2.0, "delta")):
            attached = model.generate(ex.prompt, max_new_tokens=2, do_sample=False, verbose=False)
        after = iv.evaluate_swaps(model, al, trials=trials, alphas=(2.0,), lookup=trained["ontology"])
    finally:
        model.reset_saes()
    assert gold in attached[len(ex.prompt) :]  # the edit lands on what flows on, with or without the error term
    if use_error_term:  # with the error term the attached SAE changes nothing, so neither do the swaps
        assert attached == detached and after.success == before.success
    # without the error term the reconstruction replaces every position, so only the first answer token is judged
    assert after.success["exact" if use_error_term else "first_token"][0] > 0.3


def test_reroute_trials_draws_seeded_targets_with_other_answers():
    ex = [Example(f"Q{i}: where?", c, f" {c}-city", c, "heldout") for i, c in enumerate("ABCD" * 2)]
    ex.append(Example("Q: who?", "E", " x", None, "heldout"))  # no entity: no trial
    city = {"A": " A-city", "B": " B-city", "C": " A-city", "D": None}  # C's gold is A's answer, D has none
    targets = dict.fromkeys("ABCD", list("ABCD"))
    trials = iv.reroute_trials(ex, targets, lambda e, b: city[b], 2, seed=0)
    assert trials == iv.reroute_trials(ex, targets, lambda e, b: city[b], 2, seed=0)
    for t in trials:
        assert t.target not in (t.source, "D") and t.gold == city[t.target] != t.source_answer
    assert not [t for t in trials if (t.source, t.target) == ("A", "C")]  # same answer: passed over
    per_prompt = Counter(t.prompt for t in trials)
    assert max(per_prompt.values()) <= 2 and "Q: who?" not in per_prompt
    assert {t.source for t in trials} == set("ABCD")
    with pytest.raises(ValueError, match="per_item"):
        iv.reroute_trials(ex, targets, lambda e, b: " z", 0)
    with pytest.raises(ValueError, match="no swap trials"):
        iv.reroute_trials(ex, targets, lambda e, b: None, 1)


def test_pair_matrices_are_dropped_beyond_the_limit(trained, monkeypatch):
    model, al, ont = trained["model"], trained["aligned"], trained["ontology"]
    held = ont.select("heldout")
    full = iv.evaluate_swaps(model, al, held, alphas=(1.0,), max_items=1, lookup=ont)
    monkeypatch.setattr(swaps_module, "PAIR_LIMIT", 2)
    lean = iv.evaluate_swaps(model, al, held, alphas=(1.0,), max_items=1, lookup=ont)
    assert len(full.pair["exact"][0]) == len(ont.names) > 2 and lean.pair["exact"] == [[]]
    assert lean.counts["pair_counts"] == [] and lean.success == full.success and lean.outputs == full.outputs
