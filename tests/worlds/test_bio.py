import re

import pytest

from align_lens.worlds.bio import BIO_TEMPLATES, CUES, HELDOUT_FRAMES, RELATIONS, TRAIN_FRAMES, make_world


@pytest.fixture(scope="module")
def world():
    return make_world(n_people=40, seed=3)


def test_same_seed_same_world_and_corpus(world):
    again = make_world(n_people=40, seed=3)
    assert again.people == world.people
    assert again.corpus(0) == world.corpus(0)
    assert world.corpus(0) != world.corpus(1)
    assert make_world(n_people=40, seed=4).people != world.people


def test_names_unique_and_work_city_follows_employer():
    w = make_world(n_people=1000, seed=0)
    assert len({p.name for p in w.people}) == 1000
    hq = {}
    for p in w.people:
        assert hq.setdefault(p.attrs["EMPLOYER"], p.attrs["WORK_CITY"]) == p.attrs["WORK_CITY"]
    assert len(set(hq.values())) > 1


def _parse_bio(text: str, name: str) -> dict[str, str]:
    """Relation -> value, recovered by matching each sentence against the bio templates."""
    sentences = [s + " ." for s in text.removesuffix(" <eos>").split(" . ") if s]
    sentences[-1] = sentences[-1].removesuffix(" .")
    found = {}
    for s in sentences:
        matches = [
            (rel, m.group(1))
            for rel, ts in BIO_TEMPLATES.items()
            for t in ts
            if (m := re.fullmatch(re.escape(t.format(n=name, v="\0")).replace("\0", "(.+)"), s))
        ]
        assert len(matches) == 1, f"sentence {s!r} matches {matches}"
        found[matches[0][0]] = matches[0][1]
    assert len(sentences) == len(RELATIONS)
    return found


def test_every_biography_states_every_attribute(world):
    for epoch in (0, 1):
        bios = [d.text for d in world.documents(epoch) if d.loss_from == 0]
        assert len(bios) == len(world.people)
        for person, bio in zip(world.people, bios):
            assert _parse_bio(bio, person.name) == person.attrs


def test_qa_lines_use_training_templates_only(world):
    train = {world.question(p, t) for p in world.people for t in world.templates if t.split == "train"}
    heldout = [world.question(p, t) for p in world.people for t in world.templates if t.split == "heldout"]
    for epoch in (0, 1):
        docs = world.documents(epoch)
        text = "\n".join(d.text for d in docs)
        assert not [q for q in heldout if q in text]
        qa = [d for d in docs if d.loss_from > 0]
        assert len(qa) == len(world.people) * len(RELATIONS) * world.qa_per_relation
        for d in qa:
            words = d.text.split()
            assert " ".join(words[: d.loss_from]) in train
            assert words[-1] == "<eos>" and words[d.loss_from - 1] == "A:"


def test_template_counts_and_distinct_cues(world):
    for rel in RELATIONS:
        assert len(world.templates_of(rel, "train")) >= 6
        assert len(world.templates_of(rel, "heldout")) >= 2
    frame_words = {w for f in TRAIN_FRAMES + HELDOUT_FRAMES for w in f.split()}
    cue_words = {rel: {w for c in cues for w in c.split()} - frame_words for rel, cues in CUES.items()}
    for t in world.templates:
        words = set(t.text.split())
        assert words & cue_words[t.relation], t
        for other in RELATIONS:
            if other != t.relation:
                assert not words & cue_words[other], f"{t.id} {t.text!r} uses a cue word of {other}"


def test_heldout_wording_unseen_in_training_templates(world):
    train_texts = {t.text for t in world.templates if t.split == "train"}
    for t in world.templates:
        if t.split == "heldout":
            assert t.text not in train_texts
            # with the cue swapped to another relation's it is still no training template of that relation
            for other in RELATIONS:
                for a, b in zip(CUES[t.relation], CUES[other]):
                    assert t.text.replace(a, b) not in train_texts


def test_heldout_words_all_seen_in_training_text(world):
    seen = {w for e in (0, 1) for d in world.corpus(e) for w in d.split()}
    for t in world.templates:
        assert set(t.text.replace("{n}", "").split()) <= seen, t


def test_ontology_counts_and_fields(world):
    onto = world.ontology()
    assert onto.names == list(RELATIONS)
    n_train, n_held = len(world.templates_of("MAJOR", "train")), len(world.templates_of("MAJOR", "heldout"))
    for counts in onto.counts().values():
        assert counts == {"train": 40 * n_train, "heldout": 40 * n_held}
    people = {p.id: p for p in world.people}
    for e in onto.examples:
        assert e.prompt.startswith("Q: ") and e.prompt.endswith(" A:")
        assert e.answer == people[e.entity].attrs[e.concept]
        assert people[e.entity].name in e.prompt
        rel, i = e.template.split("/")
        assert rel == e.concept and world.templates[RELATIONS.index(rel) * (n_train + n_held) + int(i)].split == e.split
    small = world.ontology(n_people=5)
    assert {e.entity for e in small.examples} == {p.id for p in world.people[:5]}


def test_vocabulary_covers_everything(world):
    vocab = set(world.vocabulary())
    assert {w for d in world.corpus(0) for w in d.split()} <= vocab
    assert {w for e in world.ontology().examples for w in (e.prompt + " " + e.answer).split()} <= vocab


def test_world_params_round_trip(world, tmp_path):
    world.save(tmp_path / "world.json")
    assert type(world).load(tmp_path / "world.json").people == world.people


def test_bad_parameters_raise():
    with pytest.raises(ValueError, match="name_pool"):
        make_world(n_people=100, name_pool=5)
    with pytest.raises(ValueError, match="qa_per_relation"):
        make_world(n_people=10, qa_per_relation=0)


def test_ontology_from_new_phrasings(world):
    phrasings = {"BIRTH_CITY": ["Where was {name} born ?", "{name} was born in which city ?"]}
    onto = world.ontology_from_phrasings(phrasings, split="heldout", n_people=5)
    held = onto.select("heldout")
    p = world.people[0]
    assert len(held) == 2 * 5 and {e.concept for e in held} == {"BIRTH_CITY"}
    assert held[0].prompt == f"Q: Where was {p.name} born ? A:" and held[0].answer == p.attrs["BIRTH_CITY"]
    assert held[0].template == "BIRTH_CITY/new0" and held[5].template == "BIRTH_CITY/new1"
    assert onto.select("train") == world.ontology(5).select("train") and onto.names == list(RELATIONS)
    assert world.question(p, "Where was {name} born ?") == held[0].prompt
    with pytest.raises(KeyError, match="SPOUSE"):
        world.ontology_from_phrasings({"SPOUSE": ["Who married {name} ?"]})
    with pytest.raises(ValueError, match="placeholder"):
        world.ontology_from_phrasings({"MAJOR": ["What did they study ?"]})
