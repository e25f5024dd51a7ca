"""A seeded synthetic world of people with six relations, their biographies and question prompts.

Every value is one word-level token except dates (`Month D YYYY`, three tokens). Question templates are a
shared set of sentence frames filled with a relation-specific cue phrase ("birthday", "employer", ...), so
the cue word alone says which relation is asked; held-out templates use frames never seen in training.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from align_lens.ontology import Concept, Example, Ontology, index_of
from align_lens.worlds.params import SavedParams

RELATIONS = ("BIRTH_DATE", "BIRTH_CITY", "UNIVERSITY", "MAJOR", "EMPLOYER", "WORK_CITY")

DESCRIPTIONS = {
    "BIRTH_DATE": "the date the person was born (Month D YYYY)",
    "BIRTH_CITY": "the city the person was born in",
    "UNIVERSITY": "the university the person studied at",
    "MAJOR": "the person's field of study",
    "EMPLOYER": "the company the person works for",
    "WORK_CITY": "the city of the person's office (the employer's headquarters)",
}

# Two cue phrases per relation; no cue word is shared between relations.
CUES = {
    "BIRTH_DATE": ("birthday", "birth date"),
    "BIRTH_CITY": ("birthplace", "hometown"),
    "UNIVERSITY": ("university", "college"),
    "MAJOR": ("major", "field of study"),
    "EMPLOYER": ("employer", "company"),
    "WORK_CITY": ("office city", "office location"),
}

TRAIN_FRAMES = (
    "What is the {c} of {n} ?",
    "What is {n} 's {c} ?",
    "Tell me the {c} of {n} .",
    "Which {c} does {n} have ?",
    "Name the {c} of {n} .",
    "Do you know the {c} of {n} ?",
    "Give me {n} 's {c} .",
    "{n} has what {c} ?",
)
HELDOUT_FRAMES = (
    "Which is the {c} of {n} ?",
    "Tell me what {n} 's {c} is .",
)

BIO_TEMPLATES = {
    "BIRTH_DATE": (
        "{n} was born on {v} .",
        "The birthday of {n} is {v} .",
        "{n} celebrates a birthday on {v} .",
        "The birth date of {n} was {v} .",
    ),
    "BIRTH_CITY": (
        "{n} was born in {v} .",
        "The birthplace of {n} is {v} .",
        "{n} grew up in the hometown of {v} .",
        "The hometown of {n} is {v} .",
    ),
    "UNIVERSITY": (
        "{n} studied at {v} .",
        "{n} graduated from {v} .",
        "The university of {n} was {v} .",
        "{n} went to college at {v} .",
    ),
    "MAJOR": (
        "{n} majored in {v} .",
        "The major of {n} was {v} .",
        "{n} chose {v} as a field of study .",
        "{n} earned a degree in {v} .",
    ),
    "EMPLOYER": (
        "{n} works for {v} .",
        "The employer of {n} is {v} .",
        "{n} is employed by {v} .",
        "{n} has a job at the company {v} .",
    ),
    "WORK_CITY": (
        "{n} works in {v} .",
        "The office of {n} is in {v} .",
        "{n} commutes to an office in {v} .",
        "The office location of {n} is {v} .",
    ),
}

MONTHS = (
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
)
MAJORS = (
    "Computer_Science",
    "Mathematics",
    "Physics",
    "Chemistry",
    "Biology",
    "Economics",
    "History",
    "Philosophy",
    "Linguistics",
    "Psychology",
    "Sociology",
    "Anthropology",
    "Astronomy",
    "Geology",
    "Statistics",
    "Architecture",
    "Music",
    "Literature",
    "Political_Science",
    "Law",
    "Medicine",
    "Nursing",
    "Pharmacy",
    "Accounting",
    "Finance",
    "Marketing",
    "Journalism",
    "Art_History",
    "Theater",
    "Dance",
    "Civil_Engineering",
    "Mechanical_Engineering",
    "Electrical_Engineering",
    "Chemical_Engineering",
    "Aerospace_Engineering",
    "Materials_Science",
    "Neuroscience",
    "Genetics",
    "Ecology",
    "Oceanography",
    "Geography",
    "Classics",
    "Education",
    "Public_Health",
    "Nutrition",
    "Agriculture",
    "Forestry",
    "Graphic_Design",
    "Film_Studies",
    "Data_Science",
)

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "dr", "gr", "kr", "st", "th")
_VOWELS = ("a", "e", "i", "o", "u", "ai", "ei", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "th", "k", "m")

QA_FORMAT = "Q: {q} A:"
EOS = "<eos>"


def invented_words(rng: random.Random, k: int, taken: set[str]) -> list[str]:
    """`k` new capitalised two-syllable words, none in `taken` (which is updated)."""
    out: list[str] = []
    while len(out) < k:
        w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(2)).capitalize()
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    attrs: dict[str, str]


@dataclass(frozen=True)
class Template:
    relation: str
    index: int
    text: str  # contains "{n}" for the name
    split: str

    @property
    def id(self) -> str:
        return f"{self.relation}/{self.index}"


@dataclass(frozen=True)
class Document:
    """A training text; loss counts on its words from position `loss_from` on (0 for bios)."""

    text: str
    loss_from: int


def question_templates() -> list[Template]:
    """Every question template: frame i of TRAIN_FRAMES uses cue i % 2, held-out frames come after."""
    out = []
    for rel in RELATIONS:
        frames = [(f, "train") for f in TRAIN_FRAMES] + [(f, "heldout") for f in HELDOUT_FRAMES]
        for i, (frame, split) in enumerate(frames):
            cue = CUES[rel][i % 2]
            out.append(Template(rel, i, frame.replace("{c}", cue), split))
    return out


@dataclass
class BioWorld(SavedParams):
    """N people with BIRTH_DATE, BIRTH_CITY, UNIVERSITY, MAJOR, EMPLOYER and WORK_CITY (= the employer's city)."""

    n_people: int = 1000
    seed: int = 0
    n_cities: int = 100
    n_universities: int = 100
    n_majors: int = 50
    n_employers: int = 100
    years: tuple[int, int] = (1900, 1999)
    max_day: int = 28
    qa_per_relation: int = 4
    name_pool: int | None = None  # first- and last-name pool size; default ceil(sqrt(3 N))
    people: list[Person] = field(init=False, repr=False)
    templates: list[Template] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        first, last = self.years  # a list when read from JSON
        self.years = (int(first), int(last))
        if not 1 <= self.n_majors <= len(MAJORS):
            raise ValueError(f"n_majors must be in 1..{len(MAJORS)}, got {self.n_majors}")
        if not 1 <= self.qa_per_relation <= len(TRAIN_FRAMES):
            raise ValueError(f"qa_per_relation must be in 1..{len(TRAIN_FRAMES)}, got {self.qa_per_relation}")
        pool = self.name_pool or math.ceil(math.sqrt(3 * self.n_people))
        if pool * pool < self.n_people:
            raise ValueError(f"name_pool {pool} gives only {pool * pool} names for {self.n_people} people")
        rng = random.Random(self.seed)
        taken = {w for t in _all_fixed_text() for w in t.split()}
        firsts, lasts = invented_words(rng, pool, taken), invented_words(rng, pool, taken)
        cities = invented_words(rng, self.n_cities, taken)
        universities = [w + "_University" for w in invented_words(rng, self.n_universities, taken)]
        employers = [w + "_Corp" for w in invented_words(rng, self.n_employers, taken)]
        headquarters = {e: rng.choice(cities) for e in employers}
        names = rng.sample([f"{f} {last}" for f in firsts for last in lasts], self.n_people)
        self.people = []
        for i, name in enumerate(names):
            employer = rng.choice(employers)
            date = f"{rng.choice(MONTHS)} {rng.randint(1, self.max_day)} {rng.randint(*self.years)}"
            attrs = {
                "BIRTH_DATE": date,
                "BIRTH_CITY": rng.choice(cities),
                "UNIVERSITY": rng.choice(universities),
                "MAJOR": rng.choice(MAJORS[: self.n_majors]),
                "EMPLOYER": employer,
                "WORK_CITY": headquarters[employer],
            }
            self.people.append(Person(f"P{i:04d}", name, attrs))
        self.templates = question_templates()

    # ---- text ----------------------------------------------------------------------------
    def templates_of(self, relation: str, split: str | None = None) -> list[Template]:
        return [t for t in self.templates if t.relation == relation and (split is None or t.split == split)]

    def question(self, person: Person, template: Template | str) -> str:
        """The prompt `Q: <question> A:` (no answer); a plain-string phrasing marks the name with `{name}`."""
        text = template.text if isinstance(template, Template) else _phrasing(template).text
        return QA_FORMAT.format(q=text.replace("{n}", person.name))

    def biography(self, person: Person, rng: random.Random) -> str:
        """One sentence per relation, a random paraphrase each, in random order."""
        sentences = [rng.choice(BIO_TEMPLATES[r]).format(n=person.name, v=person.attrs[r]) for r in RELATIONS]
        rng.shuffle(sentences)
        return " ".join(sentences) + f" {EOS}"

    def documents(self, epoch_seed: int) -> list[Document]:
        """One epoch: a fresh biography per person plus `qa_per_relation` training QA lines per relation.

        QA lines read `Q: ... A: <answer> <eos>`; their loss starts at the answer. Order is not shuffled.
        """
        rng = random.Random(f"{self.seed}/{epoch_seed}")
        docs = []
        for p in self.people:
            docs.append(Document(self.biography(p, rng), 0))
            for rel in RELATIONS:
                for t in rng.sample(self.templates_of(rel, "train"), self.qa_per_relation):
                    prompt = self.question(p, t)
                    docs.append(Document(f"{prompt} {p.attrs[rel]} {EOS}", len(prompt.split())))
        return docs

    def corpus(self, epoch_seed: int) -> list[str]:
        """The texts of `documents(epoch_seed)`."""
        return [d.text for d in self.documents(epoch_seed)]

    def vocabulary(self) -> list[str]:
        """Every word the world can produce (bios, all question templates, answers), sorted."""
        words = {w for t in _all_fixed_text() for w in t.split()} - {"{n}", "{v}"}
        words |= {w for p in self.people for w in p.name.split()}
        words |= {w for p in self.people for v in p.attrs.values() for w in v.split()}
        words |= {str(d) for d in range(1, self.max_day + 1)}
        words |= {str(y) for y in range(self.years[0], self.years[1] + 1)}
        return sorted(words)

    # ---- ontology ------------------------------------------------------------------------
    def ontology(self, n_people: int | None = None) -> Ontology:
        """One Example per (person, relation, template) for the first `n_people` people (default all)."""
        people = self.people[: n_people or self.n_people]
        examples = [
            Example(self.question(p, t), t.relation, p.attrs[t.relation], p.id, t.split, t.id)
            for p in people
            for t in self.templates
        ]
        return Ontology([Concept(r, DESCRIPTIONS[r]) for r in RELATIONS], examples)

    def ontology_from_phrasings(
        self, phrasings: Mapping[str, Sequence[str]], split: str = "heldout", n_people: int | None = None
    ) -> Ontology:
        """`ontology(n_people)` with the examples of `split` replaced by new question phrasings.

        `phrasings` maps a relation to plain strings with `{name}` where the person's name goes, e.g.
        `{"BIRTH_CITY": ["Where was {name} born ?"]}` (the shipped model's tokenizer splits on spaces, so keep
        punctuation apart). Each phrasing is asked about every person, wrapped in `Q: ... A:`; its examples carry
        template ids `RELATION/new<j>`. The other split keeps the world's own templates, so the result can be
        aligned and evaluated as it is (`split="heldout"`: held-out binding and swaps on the new wording).
        """
        for rel in phrasings:
            index_of(RELATIONS, rel)
        base = self.ontology(n_people)
        people = self.people[: n_people or self.n_people]
        new = [
            Example(self.question(p, text), rel, p.attrs[rel], p.id, split, f"{rel}/new{j}")
            for rel, texts in phrasings.items()
            for j, text in enumerate(texts)
            for p in people
        ]
        kept = [e for e in base.examples if e.split != split]
        return Ontology(base.concepts, kept + new)


def _phrasing(text: str) -> Template:
    """A one-off question template from a plain string with `{name}` where the name goes."""
    if "{name}" not in text:
        raise ValueError(f"phrasing {text!r} has no {{name}} placeholder; write e.g. 'Where was {{name}} born ?'")
    return Template("", -1, text.replace("{name}", "{n}"), "heldout")


def _all_fixed_text() -> list[str]:
    texts = [t.text for t in question_templates()] + [t for ts in BIO_TEMPLATES.values() for t in ts]
    return texts + list(MONTHS) + list(MAJORS) + [QA_FORMAT.format(q=""), EOS]


def make_world(n_people: int = 1000, seed: int = 0, **kwargs) -> BioWorld:
    """The default world: 1,000 people, seed 0 (other `BioWorld` parameters pass through)."""
    return BioWorld(n_people=n_people, seed=seed, **kwargs)
