"""The optional Stage-2 interchange term: differentiable in the SAE, lowered by training on it."""

from __future__ import annotations

import copy

import torch

from align_lens.training.interchange import CounterfactualBatch, InterchangeObjective, swap_pairs


def test_counterfactual_batch_targets_only_answer_tokens(trained):
    model = trained["model"]
    ex = trained["ontology"].select("train")[:2]
    batch = CounterfactualBatch(model, [e.prompt for e in ex], [e.answer for e in ex])
    toks, last, targets, lengths = batch.rows([0, 1], "cpu")
    for r in range(2):
        n_prompt = len(batch.prompt_toks[r])
        assert int(last[r]) == n_prompt - 1
        answer = targets[r][targets[r] != -100].tolist()
        assert answer == batch.answer_toks[r]
        assert toks[r, n_prompt : n_prompt + len(answer) - 1].tolist() == answer[:-1]


def test_swap_pairs_skip_same_answers():
    from align_lens.ontology import Example

    ex = [Example("p", "A", "x", "e1"), Example("q", "B", "x", "e1"), Example("r", "C", "y", "e1")]
    lookup = {("e1", "A"): "x", ("e1", "B"): "x", ("e1", "C"): "y"}
    assert swap_pairs(ex, ["A", "B", "C"], lookup) == [(0, 0, 2, "y"), (1, 1, 2, "y"), (2, 2, 0, "x"), (2, 2, 1, "x")]


def test_interchange_term_trains_the_slots(trained):
    model, ont = trained["model"], trained["ontology"]
    aligned = copy.deepcopy(trained["aligned"])
    train = ont.select("train")[:12]  # a fixed pool: every call uses all of its pairs
    obj = InterchangeObjective(model, trained["hook"], train, ont.names, batch_size=10**6, seed=0)
    before = obj(aligned).item()
    opt = torch.optim.Adam([aligned.W_dec, aligned.W_enc, aligned.b_enc], lr=3e-3)
    for _ in range(30):
        loss = obj(aligned)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert all(p.grad is None for p in model.parameters())  # the model stays frozen
    after = obj(aligned).item()
    assert after < 0.8 * before, (before, after)


def test_align_records_the_interchange_term_and_needs_the_model(trained):
    import pytest

    from align_lens import AlignConfig, OptimiserConfig, Runtime, align
    from align_lens.training.config import with_values

    ont, sae = trained["ontology"], trained["sae"]
    quick = AlignConfig(steps=2, optimiser=OptimiserConfig(warmup_steps=1), runtime=Runtime(progress=False))
    cfg = with_values(quick, {"steps": 3, "weights.interchange": 1.0, "interchange_batch_size": 8})
    with pytest.raises(ValueError, match="model="):
        align(sae, ont, activations=trained["train_acts"], config=cfg)
    aligned = align(sae, ont, model=trained["model"], activations=trained["train_acts"], config=cfg)
    steps = aligned.history.steps
    assert len(steps) == 3 and all(s["interchange"] > 0 for s in steps)
    assert all(
        "interchange" not in s for s in align(sae, ont, activations=trained["train_acts"], config=quick).history.steps
    )


def test_span_edit_covers_the_last_prompt_token_and_the_answer(trained):
    from align_lens.adapter import EditSite, answer_tokens, run_with_hooks
    from align_lens.training.interchange import patched_answer_loss

    model, hook = trained["model"], trained["hook"]
    multi = [e for e in trained["ontology"].examples if e.answer and len(answer_tokens(model, e.answer)) > 1]
    by_length = {len(e.prompt.split()): e for e in multi}
    ex = [by_length[n] for n in sorted(by_length)[:3]]  # prompts of different lengths: each row's own last token
    toks, last, targets, _ = CounterfactualBatch(model, [e.prompt for e in ex], [e.answer for e in ex]).rows(
        [0, 1, 2], "cpu"
    )
    assert len(set(last.tolist())) == 3
    v = 3.0 * torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0))

    def shift_from_last(x, hook):
        later = torch.arange(x.shape[1])[None, :] >= last[:, None]
        return x + later[..., None] * v

    logits = run_with_hooks(model, toks, [(EditSite(hook), shift_from_last)])
    expected = torch.nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)
    span = patched_answer_loss(model, hook, toks, last, targets, lambda h: h + v, span=True)
    at_last = patched_answer_loss(model, hook, toks, last, targets, lambda h: h + v)
    torch.testing.assert_close(span, expected)
    assert not torch.isclose(span, at_last)  # the answer positions were edited too


def test_das_and_the_stage2_term_pass_their_span_option_to_the_loss(trained, monkeypatch):
    import align_lens.analysis.das as das
    import align_lens.training.interchange as interchange
    from align_lens import AlignConfig, OptimiserConfig, Runtime, align
    from align_lens.analysis.das import DASConfig, train_das
    from align_lens.training.config import with_values

    spans = []
    real = interchange.patched_answer_loss

    def recording(*args, **kwargs):
        spans.append(kwargs.get("span", args[6] if len(args) > 6 else False))
        return real(*args, **kwargs)

    for module in (das, interchange):
        monkeypatch.setattr(module, "patched_answer_loss", recording)
    model, ont, hook, acts = trained["model"], trained["ontology"], trained["hook"], trained["train_acts"]
    quick = AlignConfig(steps=2, optimiser=OptimiserConfig(warmup_steps=1), runtime=Runtime(progress=False))
    for span in (False, True):
        train_das(model, ont.select("train"), acts, ont.names, hook, DASConfig(steps=2, span=span))
        cfg = with_values(quick, {"weights.interchange": 1.0, "interchange_batch_size": 4, "interchange_span": span})
        align(trained["sae"], ont, model=model, activations=acts, config=cfg)
    assert spans == [False] * 4 + [True] * 4  # two DAS steps, then two Stage-2 steps, per setting
