"""The concept families of the BPE biography world: consistent ontologies, documented splits, the name reading."""

from collections import Counter

import pytest

from align_lens.ontology import Ontology
from align_lens.worlds import bio_bpe_families as families
from align_lens.worlds.bio_bpe import BpeBioWorld
from align_lens.worlds.gpt2_tokenizer import load_gpt2_tokenizer


@pytest.fixture(scope="module")
def world():
    return BpeBioWorld(n_people=200, name_pool=20, n_cities=40, n_universities=30, n_employers=40)


def test_entities_split_by_phrasing_of_the_same_people(world):
    onto = families.entities(world, n_people=50)
    assert onto.n_concepts == 50 and set(onto.names) == {p.name for p in world.people_of("train")[:50]}
    counts = Counter((e.concept, e.split) for e in onto.examples)
    assert all(counts[n, "train"] == 6 and counts[n, "heldout"] == 2 for n in onto.names)
    cores = {e.split: set() for e in onto.examples}
    for e in onto.examples:
        cores[e.split].add(int(e.template.split("/")[1].split(".")[0]))
    assert cores == {"train": cores["train"] & {0, 1, 2, 3, 4}, "heldout": cores["heldout"] & {5, 6}}


def test_name_reading_ends_at_the_names_last_piece(world):
    tok = load_gpt2_tokenizer()
    full = families.entities(world, n_people=20)
    cut = families.entities(world, n_people=20, read="name")
    assert all(e.prompt.endswith(e.concept) for e in cut.examples)
    whole = {(e.entity, e.template): e.prompt for e in full.examples}
    for e in cut.examples:
        ids = tok(e.prompt)["input_ids"]
        assert tok(whole[e.entity, e.template])["input_ids"][: len(ids)] == ids
        assert ids[-1] == tok(" " + e.concept, add_special_tokens=False)["input_ids"][-1]


def test_values_at_default_sizes_and_one_concept_per_city():
    world = BpeBioWorld()
    onto = families.values(world)
    assert onto.n_concepts >= 200
    kinds = Counter(n.split(":")[0] for n in onto.names)
    assert set(kinds) == {"city", "university", "employer", "major"}
    assert all(onto.counts()[n]["heldout"] > 0 for n in onto.names)


def test_syntax_labels_follow_the_generator(world):
    onto = families.syntax(world, n_train_bios=30, n_heldout_bios=10)
    assert onto.names == ["name", "value", "other"]
    people = {p.name: p for p in world.people}
    train_people = {p.name for p in world.people[:30]}
    for e in onto.examples:
        assert (e.entity in train_people) == (e.split == "train")
        last = e.prompt.rsplit(" ", 1)[-1]  # the cut word (the token may be its first pieces)
        words = {"name": e.entity.split(), "value": " ".join(people[e.entity].attrs.values()).split()}
        if e.concept in words:
            assert any(w.startswith(last) for w in words[e.concept]), (e.concept, e.prompt[-40:])
    assert min(onto.counts()[n]["heldout"] for n in onto.names) > 0


def test_mixed_loads_from_jsonl_with_its_prefixes(world, tmp_path):
    with pytest.warns(UserWarning, match="imbalanced"):  # 6 relations over 20 people each, 6 prompts per person
        sizes = {"n_relation_people": 20, "n_entities": 60, "syntax_bios": (20, 10)}
        onto = Ontology.from_jsonl(families.write_family(world, "mixed", tmp_path / "mixed.jsonl", **sizes))
    prefixes = Counter(n.split(":")[0] for n in onto.names)
    assert prefixes["rel"] == 6 and prefixes["person"] == 60 and prefixes["tok"] == 3 and prefixes["value"] > 20
    assert len(onto.examples) == len({e.prompt for e in onto.examples})  # dedupe: one concept per prompt


def test_unknown_family_is_refused(world):
    with pytest.raises(ValueError, match="family must be one of"):
        families.family(world, "colours")


def test_entity_swaps_expect_the_swapped_in_persons_answer(world):
    onto = families.entities(world, n_people=30)
    people = {p.name: p for p in world.people}
    held = onto.select("heldout")
    trials = families.entity_swap_trials(world, held, onto.names, per_item=2, seed=1)
    assert trials == families.entity_swap_trials(world, held, onto.names, per_item=2, seed=1)
    assert 0 < len(trials) <= 2 * len(held)
    by_prompt = {e.prompt: e for e in held}
    for t in trials:
        template = by_prompt[t.prompt].template  # the phrasing (not in the JSONL), e.g. "BIRTH_CITY/5.2"
        assert template is not None
        rel = template.split("/")[0]
        assert t.source == t.entity != t.target and t.target in onto.names
        assert t.gold == " " + people[t.target].attrs[rel] != t.source_answer


def test_value_swaps_stay_in_the_kind_and_expect_the_value(world, tmp_path):
    with pytest.warns(UserWarning, match="imbalanced"):
        sizes = {"n_relation_people": 20, "n_entities": 60, "syntax_bios": (20, 10)}
        onto = Ontology.from_jsonl(families.write_family(world, "mixed", tmp_path / "mixed.jsonl", **sizes))
    held = onto.select("heldout")
    values = families.value_swap_trials(held, onto.names, prefix="value:", seed=0)
    assert values and all(t.source.startswith("value:") and t.target.startswith("value:") for t in values)
    for t in values:
        assert t.source.split(": ")[0] == t.target.split(": ")[0] and t.source != t.target  # same kind
        assert t.gold == " " + t.target.split(": ", 1)[1] != t.source_answer
    persons = families.entity_swap_trials(world, held, onto.names, prefix="person:", seed=0)
    people = {p.name: p for p in world.people}
    assert persons and all(t.target.startswith("person:") for t in persons)
    assert all(t.gold in {" " + v for v in people[t.target.removeprefix("person:")].attrs.values()} for t in persons)


def test_entity_swaps_at_the_name_edit_its_last_piece(world):
    tok = load_gpt2_tokenizer()
    held = families.entities(world, n_people=20).select("heldout")
    trials = families.entity_swap_trials(world, held, families.entities(world, n_people=20).names, at_name=True)
    assert trials and all(t.offset < 0 for t in trials)
    for t in trials:
        ids = tok(t.prompt)["input_ids"]
        assert ids[: len(ids) + t.offset] == tok(t.prompt[: t.prompt.index(t.entity) + len(t.entity)])["input_ids"]
        assert ids[len(ids) + t.offset - 1] == tok(" " + t.entity, add_special_tokens=False)["input_ids"][-1]


def test_das_view_keys_each_swap_pair_to_the_swaps_gold(world, tmp_path):
    from align_lens.interventions.trials import answer_lookup
    from align_lens.training.interchange import swap_pairs

    people = {p.name: p for p in world.people}
    onto = families.entities(world, n_people=20)
    train = onto.select("train")
    view = families.das_view(train, "entity")
    assert len(view) == len(train) and all(e.entity == e.template.split("/")[0] for e in view)  # the relation
    pairs = swap_pairs(view, onto.names, answer_lookup(view))
    assert pairs
    for i, _, b, gold in pairs:
        assert gold == " " + people[onto.names[b]].attrs[view[i].entity]  # B's answer to the relation asked
    with pytest.warns(UserWarning, match="imbalanced"):
        sizes = {"n_relation_people": 20, "n_entities": 60, "syntax_bios": (20, 10)}
        mixed = Ontology.from_jsonl(families.write_family(world, "mixed", tmp_path / "mixed.jsonl", **sizes))
    values = families.das_view(mixed.select("train"), "value", prefix="value:")
    assert values and all(e.concept.startswith("value:") for e in values)
    for i, a, b, gold in swap_pairs(values, mixed.names, answer_lookup(values)):
        source, target = mixed.names[a], mixed.names[b]
        assert source.split(": ")[0] == target.split(": ")[0]  # same kind
        assert gold == " " + target.split(": ", 1)[1]
