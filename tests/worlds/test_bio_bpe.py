"""Invariants of the BPE biography world: splits, BPE piece counts, phrasing counts, multi-token answers."""

import json
import re
from collections import Counter

import pytest

from align_lens.worlds.bio import RELATIONS
from align_lens.worlds.bio_bpe import BIO_SENTENCES, EXTRA_CORES, QUESTION_CORES, BpeBioWorld, phrasings
from align_lens.worlds.gpt2_tokenizer import load_gpt2_tokenizer


@pytest.fixture(scope="module")
def world():
    return BpeBioWorld(n_people=60, name_pool=12, n_cities=20, n_universities=15, n_employers=20)


@pytest.fixture(scope="module")
def tok():
    return load_gpt2_tokenizer()


def pieces(tok, text):
    return len(tok(text, add_special_tokens=False)["input_ids"])


def test_names_have_two_to_five_pieces_and_are_unique(world, tok):
    names = [p.name for p in world.people]
    assert len(set(names)) == len(names) == 60
    assert all(2 <= pieces(tok, " " + n) <= 5 for n in names)


def test_every_answer_has_several_tokens_and_a_leading_space(world, tok):
    examples = world.ontology("people").examples
    assert all(e.answer.startswith(" ") and pieces(tok, e.answer) >= 2 for e in examples)
    assert {e.concept for e in examples} == set(RELATIONS)


def test_phrasing_counts_and_disjoint_splits():
    counts = Counter((p.relation, p.split) for p in phrasings())
    for rel in RELATIONS:
        assert (counts[rel, "train"], counts[rel, "heldout"], counts[rel, "unseen"]) == (20, 8, 4)
    texts = {}
    for p in phrasings():
        texts.setdefault(p.split, set()).add(p.prompt("{name}"))
    assert not texts["train"] & texts["heldout"] and not texts["train"] & texts["unseen"]
    assert not texts["heldout"] & texts["unseen"]


def test_extra_wordings_add_training_phrasings_only(tok, tmp_path):
    counts = Counter((p.relation, p.split) for p in phrasings(len(EXTRA_CORES)))
    for rel in RELATIONS:
        assert (counts[rel, "train"], counts[rel, "heldout"], counts[rel, "unseen"]) == (48, 8, 4)
    held = [p for p in phrasings() if p.split != "train"]
    assert [p for p in phrasings(3) if p.split != "train"] == held  # the same held-out and no-split phrasings
    texts = {}
    for p in phrasings(len(EXTRA_CORES)):
        texts.setdefault(p.split, set()).add(p.prompt("{name}"))
    assert not texts["train"] & (texts["heldout"] | texts["unseen"])
    sizes = dict(n_people=30, name_pool=10, n_cities=20, n_universities=15, n_employers=20)
    plain, more = BpeBioWorld(**sizes), BpeBioWorld(**sizes, extra_wordings=7)
    assert plain.people == more.people
    asked = {d.text[: d.loss_from] for d in more.documents(0) if d.loss_from > 0}
    extra = {p.prompt(x.name) for p in more.phrasings() if p.core in EXTRA_CORES for x in more.people_of("train")}
    assert asked & extra and not asked & {p.prompt(x.name) for p in held for x in more.people}
    assert set(plain.vocabulary_ids(tok)) < set(more.vocabulary_ids(tok))
    more.save(tmp_path / "world.json")
    assert BpeBioWorld.load(tmp_path / "world.json").phrasings() == more.phrasings()
    with pytest.raises(ValueError, match="extra_wordings"):
        BpeBioWorld(**sizes, extra_wordings=8)


def test_with_every_extra_wording_no_heldout_question_has_a_word_never_trained_on():
    """New wordings recombine known words: with the 7 extra cores, every word of a held-out or no-split question
    occurs in a training question or a biography sentence (the word "college" was once only in answer values)."""

    def words(text: str) -> set[str]:
        return set(re.findall(r"[a-z]+", text.replace("{n}", "").replace("{v}", "").lower()))

    trained = set().union(*(words(s) for sentences in BIO_SENTENCES.values() for s in sentences))
    cores = {QUESTION_CORES[p.relation][p.core]: p.split for p in phrasings(len(EXTRA_CORES))}
    trained |= set().union(*(words(text) for text, split in cores.items() if split == "train"))
    new = {text: words(text) - trained for text, split in cores.items() if split != "train"}
    assert not {text: missing for text, missing in new.items() if missing}
    assert words("Which college did {n} go to?") <= trained


def test_heldout_people_are_in_biographies_but_never_in_questions(world):
    heldout = world.people_of("heldout")
    assert len(heldout) == 12 and not {p.id for p in heldout} & {p.id for p in world.people_of("train")}
    docs = world.documents(0)
    questions = [d.text for d in docs if d.loss_from > 0]
    bios = [d.text for d in docs if d.loss_from == 0]
    assert len(bios) == 60 and len(questions) == 48 * len(RELATIONS)
    for p in heldout:
        assert any(p.name in b for b in bios)
        assert not any(p.name in q for q in questions)


def test_ontology_sets_and_prompt_lengths(world, tok):
    for heldout, n_test in (("phrasings", 48 * 8), ("people", 12 * 20), ("unseen", 48 * 4)):
        onto = world.ontology(heldout)
        assert len(onto.select("train")) == 48 * 20 * len(RELATIONS)
        assert len(onto.select("heldout")) == n_test * len(RELATIONS)
    lengths = {pieces(tok, e.prompt) for e in world.ontology("phrasings").examples}
    assert len(lengths) > 5


def test_write_ontology_is_what_a_user_writes(world, tmp_path):
    path = world.write_ontology(tmp_path / "onto.jsonl", "people", n_people=5)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(set(r) == {"prompt", "concept", "answer", "entity", "split"} for r in rows)
    assert all(r["entity"] in r["prompt"] for r in rows)
    assert {r["split"] for r in rows} == {"train", "heldout"}


def test_vocabulary_ids_cover_every_text(world, tok):
    used = set(world.vocabulary_ids(tok))
    texts = [d.text for d in world.documents(1)] + [e.prompt + e.answer for e in world.ontology("unseen").examples]
    assert {i for row in tok(texts)["input_ids"] for i in row} <= used


def test_same_seed_same_world_other_seed_other_people():
    a, b, c = (BpeBioWorld(n_people=30, name_pool=10, seed=s) for s in (0, 0, 1))
    assert a.people == b.people and a.people != c.people
