"""Two-hop world: facts, splits, formats, step-wise ontologies; a few-step model run; the shipped model."""

import pytest

from align_lens.worlds.two_hop import (
    HELDOUT_FRAMES,
    TRAIN_FRAMES,
    TwoHopWorld,
    make_two_hop_world,
    select_step,
    step_of,
)


@pytest.fixture(scope="module")
def world():
    return TwoHopWorld(n_entities=12, n_relations=4, seed=3, ood_fraction=0.1, n_heldout=40)


def test_facts_and_compositions_follow_the_graph(world):
    assert len(world.facts) == 12 * 4
    assert all(v != e for (e, _), v in world.facts.items())
    for c in world.splits["train"][:50]:
        assert c.e2 == world.facts[(c.e1, c.r1)] and c.e3 == world.facts[(c.e2, c.r2)]


def test_splits_are_disjoint_and_ood_uses_an_ood_fact(world):
    keys = {k: {(c.e1, c.r1, c.r2) for c in v} for k, v in world.splits.items()}
    assert not keys["train"] & keys["heldout"] and not keys["train"] & keys["ood"]
    assert sum(len(v) for v in keys.values()) == 12 * 4 * 4
    assert len(keys["heldout"]) == 40 and len(world.ood_facts) == round(0.1 * 48)
    for c in world.splits["ood"]:
        assert (c.e1, c.r1) in world.ood_facts or (c.e2, c.r2) in world.ood_facts
    for c in world.splits["train"] + world.splits["heldout"]:
        assert (c.e1, c.r1) not in world.ood_facts and (c.e2, c.r2) not in world.ood_facts


def test_world_is_seeded_and_round_trips(world, tmp_path):
    world.save(tmp_path / "w.json")
    again = TwoHopWorld.load(tmp_path / "w.json")
    assert again.facts == world.facts and again.splits == world.splits
    other = TwoHopWorld(n_entities=12, n_relations=4, seed=4, ood_fraction=0.1, n_heldout=40)
    assert other.facts != world.facts


def test_official_layered_world_has_the_4000_4000_split():
    w = make_two_hop_world(official=True)
    s = w.summary()
    assert s["entities"] == 60 and s["atomic_facts"] == 800
    assert s["train_compositions"] == 4000 and s["heldout_compositions"] == 4000 and s["ood_compositions"] == 0
    e1s, e2s = set(w.entities[:20]), set(w.bridges())
    assert all(c.e1 in e1s and c.e2 in e2s for c in w.splits["heldout"])
    assert len(make_two_hop_world(official=True, n_train=1000).splits["train"]) == 1000


@pytest.mark.parametrize("official", [True, False])
def test_more_training_compositions_than_the_world_has_is_an_error(official):
    kw = {} if official else {"n_entities": 10, "n_relations": 3, "n_heldout": 20}
    with pytest.raises(ValueError, match="n_train=18000 but the world leaves"):
        make_two_hop_world(official=official, n_train=18000, **kw)


def test_formats_and_questions(world):
    c = world.splits["train"][0]
    assert world.answer(c, "explicit") == f"{c.e2} {c.e3}" and world.answer(c, "implicit") == c.e3
    q = world.question(c, "t0")
    assert q.startswith("Q: ") and q.endswith(" A:") and c.e1 in q and c.r1.lower() in q
    with pytest.raises(ValueError, match="format"):
        world.answer(c, "verbose")
    for frame in ("h0", "h1"):
        assert set(world.question(c, frame).split()) <= set(world.vocabulary())
    assert len(TRAIN_FRAMES) == 4 and len(HELDOUT_FRAMES) == 2


def test_relation_ontology_is_stepwise(world):
    onto = world.relation_ontology("explicit", n_train=30)
    assert onto.names == world.relations
    s1, s2 = select_step(onto, "step1"), select_step(onto, "step2")
    assert len(s1.examples) == len(s2.examples) == 30 + 40
    for a, b in zip(s1.examples, s2.examples):
        assert b.prompt == f"{a.prompt} {b.entity}"  # step 2 ends with the bridge entity
        assert a.answer == f"{b.entity} {b.answer}"
    assert all(e.template.split("/")[1].startswith("t") for e in onto.select("train"))
    assert {step_of(e) for e in onto.examples} == {"step1", "step2"}
    implicit = world.relation_ontology("implicit", steps=(2,), n_train=30)
    assert all(e.prompt.endswith("A:") and step_of(e) == "step2" for e in implicit.examples)


def test_entity_ontology_labels_the_bridge(world):
    onto = world.entity_ontology(n_train=48)
    assert set(onto.names) <= set(world.entities) and onto.n_concepts >= 10
    bridges = {(c.e1, c.e2) for v in world.splits.values() for c in v}
    for e in onto.examples:
        assert e.answer.split()[0] == e.concept and (e.entity, e.concept) in bridges


def test_encode_marks_the_answer_targets(tmp_path):
    from align_lens.worlds.two_hop_model import encode

    w = TwoHopWorld(n_entities=6, n_relations=2, seed=0, ood_fraction=0.0, n_heldout=5)
    from align_lens.worlds.tokenizer import build_tokenizer

    tok = build_tokenizer(w.vocabulary(), tmp_path)
    c = w.splits["train"][0]
    tokens, mask = encode(tok, [w.question(c)], [w.answer(c)])
    words = tok.convert_ids_to_tokens(tokens[0].tolist())
    targets = [words[i + 1] for i in range(len(words) - 1) if mask[0, i]]
    assert targets == [c.e2, c.e3, "<eos>"]


def test_few_steps_of_training_write_checkpoints_and_logs(tmp_path):
    from align_lens.worlds.two_hop_model import (
        checkpoint_steps,
        load_checkpoint,
        load_two_hop_meta,
        train_two_hop_model,
    )

    w = TwoHopWorld(n_entities=8, n_relations=3, seed=1, ood_fraction=0.1, n_heldout=10)
    model = train_two_hop_model(
        w,
        tmp_path,
        "implicit",
        n_layers=1,
        d_model=32,
        steps=6,
        batch_size=16,
        checkpoint_every=3,
        eval_every=3,
        eval_n=20,
        progress=False,
    )
    assert checkpoint_steps(tmp_path) == [0, 3, 6]
    log = (tmp_path / "train_log.jsonl").read_text().splitlines()
    assert len(log) == 3 and '"heldout"' in log[-1] and '"ood"' in log[-1]
    meta = load_two_hop_meta(tmp_path)
    assert meta["format"] == "implicit" and meta["final"]["step"] == 6
    first = load_checkpoint(tmp_path, 0)
    assert not all((a == b).all() for a, b in zip(first.parameters(), model.parameters()))
    with pytest.raises(FileNotFoundError, match="saved steps"):
        load_checkpoint(tmp_path, 5)


def test_shipped_explicit_model_answers_heldout_compositions():
    from align_lens.worlds.two_hop_model import (
        encode,
        exact_accuracy,
        load_two_hop_meta,
        load_two_hop_model,
        load_two_hop_world,
    )

    model, world, meta = load_two_hop_model(), load_two_hop_world(), load_two_hop_meta()
    assert meta["format"] == "explicit"
    assert meta["final"]["train"] >= 0.99 and meta["final"]["heldout"] >= 0.95
    held = world.splits["heldout"][:200]
    tokens, mask = encode(model.tokenizer, [world.question(c, "t1") for c in held], [world.answer(c) for c in held])
    assert exact_accuracy(model, tokens, mask) >= 0.95


def test_compact_phrasing_has_one_short_frame():
    w = TwoHopWorld(n_entities=6, n_relations=2, seed=0, n_heldout=5, phrasing="compact")
    c = w.splits["train"][0]
    assert w.frame_ids() == ["c0"] and w.question(c, "c0") == f"Q: {c.e1} {c.r1.lower()} {c.r2.lower()} A:"
    assert w.atomic_question(c.e1, c.r1) == f"Q: {c.e1} {c.r1.lower()} A:"
    with pytest.raises(ValueError, match="no held-out frames"):
        w.relation_ontology(heldout_frames="heldout")
    with pytest.raises(ValueError, match="phrasing"):
        TwoHopWorld(phrasing="poetic")


def test_cli_train_two_hop_on_the_official_world(tmp_path, capsys):
    from align_lens.cli import main
    from align_lens.worlds.two_hop_model import checkpoint_steps, load_two_hop_world

    out = tmp_path / "m"
    argv = ["train-two-hop", "--official", "--phrasing", "compact", "--out", str(out), "--steps", "2"]
    assert main([*argv, "--checkpoint-every", "1", "--eval-every", "0", "--device", "cpu"]) == 0
    assert checkpoint_steps(out) == [0, 1, 2] and load_two_hop_world(out).layered
    assert '"heldout"' in capsys.readouterr().out
