import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from align_lens import Concept, Example, Ontology, OntologyError


def _records():
    return [
        dict(prompt="Q: a A:", concept="x", answer="1", split="train"),
        dict(prompt="Q: b A:", concept="y", answer="2", split="train"),
        dict(prompt="Q: c A:", concept="y", split="heldout", entity="e1", template="y/1"),
    ]


def test_from_records_orders_concepts_and_counts():
    onto = Ontology.from_records(_records())
    assert onto.names == ["x", "y"]
    assert onto.counts() == {"x": {"train": 1, "heldout": 0}, "y": {"train": 1, "heldout": 1}}
    assert onto.labels("train").tolist() == [0, 1]
    assert onto.prompts("heldout") == ["Q: c A:"]
    assert "2 concepts" in repr(onto) and "heldout=1" in repr(onto)


def test_jsonl_csv_and_json_round_trip(tmp_path):
    recs = _records()
    (tmp_path / "o.jsonl").write_text("\n".join(json.dumps(r) for r in recs))
    a = Ontology.from_jsonl(tmp_path / "o.jsonl")
    with open(tmp_path / "o.csv", "w") as f:
        f.write("prompt,concept,answer,split,entity,template\n")
        for r in recs:
            f.write(
                ",".join(str(r.get(k, "")) for k in ["prompt", "concept", "answer", "split", "entity", "template"])
                + "\n"
            )
    b = Ontology.from_csv(tmp_path / "o.csv")
    assert a.examples == b.examples
    a.to_json(tmp_path / "o.json")
    assert Ontology.from_json(tmp_path / "o.json") == a
    assert Ontology.from_json(a.to_json()) == a


@pytest.mark.parametrize(
    "concepts, examples, match",
    [
        (["x", "x"], [], "duplicate"),
        (["x"], [], "at least two"),
        (["x", "y"], [Example("p", "z")], "unknown concept label 'z'"),
        (["x", "y"], [Example(" ", "x"), Example("p", "y")], "empty prompt"),
        (["x", "y"], [Example("p", "x")], r"\['y'\] have no training example"),
        (["x", "y"], [Example("p", "x"), Example("q", "y", split="test")], "split 'test'"),
    ],
)
def test_validation_errors(concepts, examples, match):
    with pytest.raises(OntologyError, match=match):
        Ontology(concepts, examples)


def test_unknown_record_field_and_index():
    with pytest.raises(OntologyError, match="unknown field"):
        Ontology.from_records([dict(prompt="p", concept="x", label="x")])
    onto = Ontology.from_records(_records())
    with pytest.raises(KeyError, match="known concepts are"):
        onto.index("nope")


def test_imbalance_warns():
    recs = [dict(prompt=f"p{i}", concept="x") for i in range(10)] + [dict(prompt="q", concept="y")]
    with pytest.warns(UserWarning, match="imbalanced"):
        Ontology.from_records(recs)


word = st.text(alphabet="abcdefgh ", min_size=1, max_size=12).filter(lambda s: s.strip())


@settings(max_examples=40, deadline=None)
@given(
    names=st.lists(st.text(alphabet="abcxyz", min_size=1, max_size=5), min_size=2, max_size=5, unique=True),
    prompts=st.lists(word, min_size=1, max_size=20, unique=True),  # one concept per prompt
    data=st.data(),
)
def test_json_round_trip_property(names, prompts, data):
    examples = [Example(p, names[i % len(names)]) for i, p in enumerate(prompts)]
    examples += [Example("fill " + n, n) for n in names]  # every concept has a training example
    extra = data.draw(st.lists(st.sampled_from(names), max_size=5))
    examples += [Example("held " + n, n, split="heldout", answer="a b") for n in extra]
    onto = Ontology([Concept(n, "d") for n in names], examples)
    back = Ontology.from_json(onto.to_json())
    assert back == onto
    assert back.labels().tolist() == [names.index(e.concept) for e in examples]


def test_many_concepts_index_and_short_error_messages():
    """20,000 concepts: index is a lookup by name, and an error lists 20 names and how many more."""
    names = [f"c{i}" for i in range(20000)]
    onto = Ontology.from_records([dict(prompt=f"p{i}", concept=n) for i, n in enumerate(names)], names)
    assert [onto.index(n) for n in ("c0", "c19999", "c777")] == [0, 19999, 777]
    with pytest.raises(KeyError, match="and 19,980 more") as err:
        onto.index("nope")
    assert len(str(err.value)) < 500
    with pytest.raises(OntologyError, match="unknown concept label 'zz'.*and 19,980 more"):
        Ontology.from_records([dict(prompt="q", concept="zz")], names)
