"""Four concept families on the BPE biography world, each an `Ontology` as a user would write it.

- `relations`: the six relations (`BpeBioWorld.ontology`).
- `entities`: every person a concept (its name), read at the question's last token (`read="question"`) or at the
  name's last BPE piece (`read="name"`). The name reading is the prompt cut right after the name: GPT-2 splits
  words before BPE, so the cut prompt's tokens are the full prompt's up to the name's last piece, and a causal model
  gives the same activation there; both readings are ordinary last-token ontologies. Train: `train_per_person`
  training phrasings per person; held-out: `heldout_per_person` held-out phrasings of the same people (a concept
  must be trained, so this family has no held-out people). A cut held-out prompt equal to a cut training prompt of
  the same person is dropped.
- `values`: every city, university, employer and major held by one of `people` ("city: Port Tourru": one concept
  whether asked as birth or work city), read at the question's last token; split by phrasing as above.
- `syntax`: whether a biography token is inside a name ("name"), inside an attribute value ("value") or neither
  ("other"); the example is the biography cut after that token (only tokens where the cut text tokenizes to the
  biography's own prefix). Train: biographies of the first `n_train_bios` people, held-out: of the next ones.
- `mixed`: the four families in one ontology, names prefixed "rel:", "person:", "value:", "tok:". A prompt has one
  concept, so each family gets its own people: relations the first `n_relation_people` train people, entities the
  next `n_entities`, values the rest of the train people, syntax the biographies of the held-out people.
"""

from __future__ import annotations

import random
from dataclasses import replace
from pathlib import Path

from align_lens.interventions.trials import SwapTrial, reroute_trials
from align_lens.ontology import SPLITS, Concept, Example, Ontology
from align_lens.worlds.bio import RELATIONS
from align_lens.worlds.bio_bpe import EXTRA_CORES, BpeBioWorld, Person, Phrasing, phrasings, write_jsonl
from align_lens.worlds.gpt2_tokenizer import load_gpt2_tokenizer

FAMILIES = ("relations", "entities", "values", "syntax", "mixed")
VALUE_KINDS = {
    "BIRTH_CITY": "city",
    "WORK_CITY": "city",
    "UNIVERSITY": "university",
    "EMPLOYER": "employer",
    "MAJOR": "major",
}
TOKEN_CLASSES = {"n": "name", "v": "value"}  # anything else is "other"


def _by_split(world: BpeBioWorld, split: str) -> list[Phrasing]:
    return [p for p in world.phrasings() if p.split == split]


def _every_phrasing() -> list[Phrasing]:
    """The phrasings of any world (every core, extra wordings included): what a question is matched against."""
    return phrasings(len(EXTRA_CORES))


def relations(world: BpeBioWorld, n_people: int | None = None) -> Ontology:
    """The relation ontology: train people × training phrasings, held-out phrasings as held-out."""
    return world.ontology("phrasings", n_people)


def _question(person: Person, ph: Phrasing, split: str, concept: str, read: str = "question") -> Example:
    prompt = ph.prompt(person.name)
    if read == "name":
        prompt = prompt[: prompt.index(person.name) + len(person.name)]
        return Example(prompt, concept, None, person.name, split, ph.id)
    return Example(prompt, concept, " " + person.attrs[ph.relation], person.name, split, ph.id)


def entities(
    world: BpeBioWorld,
    n_people: int = 1000,
    train_per_person: int = 6,
    heldout_per_person: int = 2,
    read: str = "question",
    seed: int = 0,
    people: list[Person] | None = None,
) -> Ontology:
    """Each of the first `n_people` train people (or `people`) a concept named for the person (module docstring)."""
    if read not in ("question", "name"):
        raise ValueError(f"read is 'question' or 'name', got {read!r}")
    people = world.people_of("train")[:n_people] if people is None else people
    rng = random.Random(f"{seed}/entities")
    train, held = _by_split(world, "train"), _by_split(world, "heldout")
    examples: list[Example] = []
    for p in people:
        mine = [_question(p, ph, "train", p.name, read) for ph in rng.sample(train, train_per_person)]
        seen = {e.prompt for e in mine}
        mine += [
            e
            for ph in rng.sample(held, heldout_per_person)
            if (e := _question(p, ph, "heldout", p.name, read)).prompt not in seen
        ]
        examples += list({e.prompt: e for e in mine}.values())
    return Ontology([Concept(p.name, f"the person {p.name}") for p in people], examples)


def values(
    world: BpeBioWorld,
    people: list[Person] | None = None,
    train_per_value: int = 8,
    heldout_per_value: int = 4,
    seed: int = 0,
) -> Ontology:
    """Every attribute value held by one of `people` (default: the train people) a concept (module docstring)."""
    people = world.people_of("train") if people is None else people
    holders: dict[str, list[tuple[Person, str]]] = {}
    for p in people:
        for rel, kind in VALUE_KINDS.items():
            holders.setdefault(f"{kind}: {p.attrs[rel]}", []).append((p, rel))
    rng = random.Random(f"{seed}/values")
    split_phrasings = {s: {r: [p for p in _by_split(world, s) if p.relation == r] for r in RELATIONS} for s in SPLITS}
    examples = []
    for name, held in holders.items():
        for split, k in (("train", train_per_value), ("heldout", heldout_per_value)):
            pool = [(p, ph) for p, rel in held for ph in split_phrasings[split][rel]]
            examples += [_question(p, ph, split, name) for p, ph in rng.sample(pool, min(k, len(pool)))]
    return Ontology([Concept(n) for n in holders], examples)


def syntax(
    world: BpeBioWorld,
    people: list[Person] | None = None,
    n_train_bios: int = 300,
    n_heldout_bios: int = 100,
    per_class: int = 2,
    seed: int = 0,
) -> Ontology:
    """Name / value / other for sampled biography tokens, read at the token (module docstring)."""
    people = world.people if people is None else people
    if len(people) < n_train_bios + n_heldout_bios:
        raise ValueError(f"{len(people)} people for {n_train_bios} + {n_heldout_bios} biographies; give more people")
    tok = load_gpt2_tokenizer()
    rng = random.Random(f"{seed}/syntax")
    candidates = []
    for i, p in enumerate(people[: n_train_bios + n_heldout_bios]):
        text, spans = world.labelled_biography(p, rng)
        enc = tok(text, add_special_tokens=False, return_offsets_mapping=True)
        by_class: dict[str, list[int]] = {}
        for t, (_, end) in enumerate(enc["offset_mapping"]):
            field = next((s.field for s in spans if s.start <= end - 1 < s.end), "")
            by_class.setdefault(TOKEN_CLASSES.get(field, "other"), []).append(t)
        split = "train" if i < n_train_bios else "heldout"
        for cls, positions in sorted(by_class.items()):
            for t in rng.sample(positions, min(per_class, len(positions))):
                ids = enc["input_ids"][: t + 1]
                candidates.append((text[: enc["offset_mapping"][t][1]], cls, p.name, split, ids))
    cut = tok([c[0] for c in candidates], add_special_tokens=False)["input_ids"]
    examples: dict[str, Example] = {}
    for (prompt, cls, name, split, ids), again in zip(candidates, cut):
        if again == ids and prompt not in examples:
            examples[prompt] = Example(prompt, cls, None, name, split)
    return Ontology([Concept(c) for c in ("name", "value", "other")], list(examples.values()))


def _prefixed(onto: Ontology, prefix: str) -> tuple[list[Concept], list[Example]]:
    concepts = [replace(c, name=prefix + c.name) for c in onto.concepts]
    return concepts, [replace(e, concept=prefix + e.concept) for e in onto.examples]


def mixed(
    world: BpeBioWorld,
    n_relation_people: int = 100,
    n_entities: int = 1000,
    entity_read: str = "question",
    syntax_bios: tuple[int, int] = (300, 100),
    seed: int = 0,
) -> Ontology:
    """The four families in one ontology, each on its own people (module docstring)."""
    train = world.people_of("train")
    if len(train) <= n_relation_people + n_entities:
        raise ValueError(f"{len(train)} train people leave none for values; lower n_relation_people or n_entities")
    rel_people = {p.name for p in train[:n_relation_people]}
    rel = world.ontology("phrasings")
    rel = Ontology(rel.concepts, [e for e in rel.examples if e.entity in rel_people])
    parts = [
        _prefixed(rel, "rel:"),
        _prefixed(
            entities(world, read=entity_read, seed=seed, people=train[n_relation_people:][:n_entities]), "person:"
        ),
        _prefixed(values(world, train[n_relation_people + n_entities :], seed=seed), "value:"),
        _prefixed(syntax(world, world.people_of("heldout"), *syntax_bios, seed=seed), "tok:"),
    ]
    return Ontology([c for cs, _ in parts for c in cs], [e for _, es in parts for e in es])


def entity_swap_trials(
    world: BpeBioWorld,
    examples: list[Example],
    names: list[str],
    per_item: int = 1,
    prefix: str = "",
    seed: int = 0,
    at_name: bool = False,
) -> list[SwapTrial]:
    """Entity swaps on person concepts (`entities`, or `mixed`'s with `prefix="person:"`): the question about A
    (`examples`: question-read, with answers), A's concept swapped to B (one of `names`), succeeds when the model
    gives B's answer to the same question (the relation asked is found by matching the prompt to the world's
    phrasings; a prompt of no phrasing gives no trial). The edit is at the question's last token, or with
    `at_name` at the name's last piece (`SwapTrial.offset`: the tokens after the name, negated), where
    `entities(read="name")` reads. `per_item` targets per base example (`reroute_trials`)."""
    tok = load_gpt2_tokenizer()

    def offset(e: Example) -> int:
        assert e.entity is not None  # reroute_trials passes only examples with an entity
        cut = e.prompt[: e.prompt.index(e.entity) + len(e.entity)]
        return len(tok(cut)["input_ids"]) - len(tok(e.prompt)["input_ids"])

    people = {p.name: p for p in world.people}
    kept = [n for n in names if n.startswith(prefix)]
    every = _every_phrasing()

    def gold(e: Example, target: str) -> str | None:
        """B's answer to the relation asked by `e`."""
        rel = relation_asked(e, every)
        return None if rel is None else " " + people[target.removeprefix(prefix)].attrs[rel]

    return reroute_trials(examples, dict.fromkeys(kept, kept), gold, per_item, seed, offset if at_name else None)


def relation_asked(e: Example, every: list[Phrasing] | None = None) -> str | None:
    """The relation a question about `e.entity` asks, found by re-phrasing it with each phrasing (None: no
    phrasing gives this prompt)."""
    every = _every_phrasing() if every is None else every
    return next((ph.relation for ph in every if e.entity and ph.prompt(e.entity) == e.prompt), None)


def das_view(examples: list[Example], kind: str, prefix: str = "") -> list[Example]:
    """The `prefix` examples as DAS's interchange training reads them (`swap_pairs`: the gold of A → B is the
    answer of the example whose `entity` is the base's and whose concept is B). Entity swaps: `entity` becomes the
    relation asked, so the gold is B's answer to it; value swaps: `entity` becomes the value's kind (city,
    university, …), so the gold is B itself, of the same kind. Examples without an answer or relation are dropped."""
    every, out = _every_phrasing(), []
    for e in examples:
        if not e.concept.startswith(prefix) or e.answer is None:
            continue
        key = relation_asked(e, every) if kind == "entity" else e.concept.removeprefix(prefix).split(": ")[0]
        if key is not None:
            out.append(replace(e, entity=key))
    return out


def value_swap_trials(
    examples: list[Example], names: list[str], per_item: int = 1, prefix: str = "", seed: int = 0
) -> list[SwapTrial]:
    """Value swaps on value concepts (`values`, or `mixed`'s with `prefix="value:"`): a question answered by
    value A, A's concept swapped to a value B of the same kind (city, university, …), succeeds when the model
    answers B. `per_item` targets per base example (`reroute_trials`)."""
    kinds: dict[str, list[str]] = {}
    for n in names:
        if n.startswith(prefix):
            kinds.setdefault(n.removeprefix(prefix).split(": ")[0], []).append(n)
    targets = {n: kinds[n.removeprefix(prefix).split(": ")[0]] for ns in kinds.values() for n in ns}
    return reroute_trials(examples, targets, lambda e, b: " " + b.split(": ", 1)[1], per_item, seed)


def family(world: BpeBioWorld, name: str, **sizes) -> Ontology:
    """The ontology of family `name` (one of FAMILIES) with its sizes given as keywords."""
    makers = {"relations": relations, "entities": entities, "values": values, "syntax": syntax, "mixed": mixed}
    if name not in makers:
        raise ValueError(f"family must be one of {FAMILIES}, got {name!r}")
    return makers[name](world, **sizes)


def write_family(world: BpeBioWorld, name: str, path: str | Path, **sizes) -> Path:
    """`family(world, name, **sizes)` as user-style JSONL (`write_jsonl`)."""
    return write_jsonl(family(world, name, **sizes), path)
