"""A seeded biography world in natural English on GPT-2's BPE tokenizer.

People have invented names of 2–5 BPE pieces and six relations whose values are several tokens each (cities,
universities, companies, majors, dates), written with a leading space as GPT-2 reads them. Biographies are one
sentence per relation, a random paraphrase each, in random order, drawn fresh every epoch. Questions are a
relation-specific wording ("core") inside a prompt format: cores 0–4 × every format are the 20 training phrasings
per relation, cores 5–6 the 8 held-out ones, core 7 is in no split (a final check on wording never used); a world
with `extra_wordings=k` also trains on cores 8 … 7 + k (up to 12 training wordings, 48 phrasings per relation).
People are split too: the biographies of every person are trained on, the questions only of the "train" people;
"heldout" people are asked only at evaluation (knowledge seen in biographies, never in questions).
"""

from __future__ import annotations

import json
import random
import string
from dataclasses import dataclass, field
from pathlib import Path

from align_lens.ontology import Concept, Example, Ontology, index_of
from align_lens.worlds.bio import DESCRIPTIONS, MONTHS, RELATIONS, invented_words
from align_lens.worlds.gpt2_tokenizer import ENDOFTEXT, load_gpt2_tokenizer
from align_lens.worlds.params import SavedParams

PHRASING_SPLITS = ("train", "heldout", "unseen")  # "unseen": the cores kept in no split
TRAIN_CORES, HELDOUT_CORES, UNSEEN_CORES = range(0, 5), range(5, 7), range(7, 8)
EXTRA_CORES = range(8, 15)  # more training wordings, used by a world with `extra_wordings` > 0

FORMATS = ("Q: {q}\nA:", "Question: {q}\nAnswer:", "{q} Answer:", "Q: {q} A:")

QUESTION_CORES = {
    "BIRTH_DATE": (
        "When was {n} born?",
        "What is the birth date of {n}?",
        "On what date was {n} born?",
        "What is {n}'s date of birth?",
        "When is the birthday of {n}?",
        "Which day was {n} born on?",
        "What date of birth does {n} have?",
        "{n} was born on which date?",
        "What was the date of {n}'s birth?",
        "When did {n} come into the world?",
        "When does {n} celebrate a birthday?",
        "What is the exact date {n} was born?",
        "Tell me the birth date of {n}.",
        "What birth date is listed for {n}?",
        "What is the day, month and year of {n}'s birth?",
    ),
    "BIRTH_CITY": (
        "Where was {n} born?",
        "What is the birthplace of {n}?",
        "In which city was {n} born?",
        "What is {n}'s hometown?",
        "Which city is {n} from?",
        "Where is {n} originally from?",
        "What city was {n} born in?",
        "{n} was born in which city?",
        "What is the city of {n}'s birth?",
        "Where did {n} grow up?",
        "In what place was {n} born?",
        "Which city is the hometown of {n}?",
        "Where does {n} originally come from?",
        "What is {n}'s city of birth?",
        "Tell me the birthplace of {n}.",
    ),
    "UNIVERSITY": (
        "Where did {n} study?",
        "Which university did {n} attend?",
        "What school did {n} graduate from?",
        "What is {n}'s alma mater?",
        "Where did {n} go to university?",
        "Which college did {n} go to?",
        "What university did {n} study at?",
        "{n} graduated from which university?",
        "Which university gave {n} a degree?",
        "What university is {n} a graduate of?",
        "At which college did {n} study?",
        "Which school did {n} attend?",
        "What university did {n} enroll at?",
        "Tell me the university {n} attended.",
        "Where did {n} receive a degree?",
    ),
    "MAJOR": (
        "What did {n} study?",
        "What was {n}'s major?",
        "Which field did {n} major in?",
        "What subject did {n} specialize in?",
        "What is the field of study of {n}?",
        "What did {n} major in?",
        "Which subject did {n} study?",
        "{n} has a degree in which field?",
        "What was {n}'s field of study?",
        "In which subject does {n} hold a degree?",
        "What did {n} specialize in?",
        "Which major did {n} choose?",
        "What discipline did {n} study?",
        "What was the subject of {n}'s degree?",
        "Tell me the major of {n}.",
    ),
    "EMPLOYER": (
        "Where does {n} work?",
        "Which company employs {n}?",
        "Who is {n}'s employer?",
        "What company does {n} work for?",
        "For which firm does {n} work?",
        "Who does {n} work for?",
        "Which employer does {n} have?",
        "{n} is employed by which company?",
        "What firm employs {n}?",
        "At which company does {n} work?",
        "Which company does {n} have a job at?",
        "Who employs {n}?",
        "What is the name of {n}'s employer?",
        "What company is {n} employed at?",
        "Tell me the employer of {n}.",
    ),
    "WORK_CITY": (
        "In which city does {n} work?",
        "Where is {n}'s office?",
        "What city is {n}'s workplace in?",
        "In what city is the office of {n}?",
        "Which city does {n} commute to?",
        "What city does {n} work in?",
        "Where is the office of {n} located?",
        "{n} works in which city?",
        "Which city is {n}'s office in?",
        "In what city does {n} have an office?",
        "Where does {n} go to work every morning?",
        "What city is {n} employed in?",
        "In which town is {n}'s workplace?",
        "Where is {n}'s workplace located?",
        "What is the city where {n} works?",
    ),
}

BIO_SENTENCES = {
    "BIRTH_DATE": (
        "{n} was born on {v}.",
        "{n} came into the world on {v}.",
        "The birthday of {n} is {v}.",
        "{n}'s date of birth is {v}.",
        "{n} celebrates a birthday every year on {v}.",
        "Records show that {n} was born on {v}.",
    ),
    "BIRTH_CITY": (
        "{n} was born in {v}.",
        "{n} grew up in {v}.",
        "The hometown of {n} is {v}.",
        "{n} spent a childhood in {v}.",
        "{n} is a native of {v}.",
        "The birthplace of {n} was {v}.",
    ),
    "UNIVERSITY": (
        "{n} studied at {v}.",
        "{n} graduated from {v}.",
        "{n} attended {v}.",
        "{n} received a degree from {v}.",
        "{n}'s alma mater is {v}.",
        "After school, {n} enrolled at {v}.",
    ),
    "MAJOR": (
        "{n} majored in {v}.",
        "{n} studied {v} at university.",
        "The major of {n} was {v}.",
        "{n} earned a degree in {v}.",
        "{n} specialized in {v}.",
        "{n} chose {v} as a field of study.",
    ),
    "EMPLOYER": (
        "{n} works for {v}.",
        "{n} is employed by {v}.",
        "The employer of {n} is {v}.",
        "{n} has a job at {v}.",
        "{n} took a position at {v}.",
        "These days {n} works at {v}.",
    ),
    "WORK_CITY": (
        "{n} works in {v}.",
        "{n}'s office is in {v}.",
        "{n} commutes to an office in {v}.",
        "The workplace of {n} is in {v}.",
        "Every morning {n} goes to work in {v}.",
        "{n} has an office in {v}.",
    ),
}

MAJORS = (
    "Computer Science",
    "Marine Biology",
    "Mechanical Engineering",
    "Art History",
    "Political Science",
    "Chemical Engineering",
    "Public Health",
    "Data Science",
    "Applied Mathematics",
    "Molecular Biology",
    "Civil Engineering",
    "Comparative Literature",
    "Environmental Science",
    "Cognitive Science",
    "Materials Science",
    "Music Theory",
    "Film Studies",
    "Ancient History",
    "Nuclear Physics",
    "Organic Chemistry",
    "Industrial Design",
    "Urban Planning",
    "Social Work",
    "Electrical Engineering",
    "Modern Languages",
    "Software Engineering",
    "Business Administration",
    "Theoretical Physics",
    "Graphic Design",
    "Cell Biology",
)
CITY_FORMS = ("{w}", "{w}", "Port {w}", "New {w}", "{w} Falls", "{w} Bay", "Lake {w}", "{w} Springs")
UNIVERSITY_FORMS = (
    "University of {w}",
    "{w} University",
    "{w} Institute of Technology",
    "{w} College",
    "{w} State University",
)
EMPLOYER_FORMS = (
    "{w} Systems",
    "{w} Labs",
    "{w} Industries",
    "{w} Group",
    "{w} Technologies",
    "{w} Holdings",
    "{w} Foods",
    "{w} Motors",
)


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    split: str  # "train": questions trained on; "heldout": biography only
    attrs: dict[str, str]  # values without the leading space


@dataclass(frozen=True)
class Phrasing:
    relation: str
    core: int
    format: int
    split: str  # one of PHRASING_SPLITS

    @property
    def id(self) -> str:
        return f"{self.relation}/{self.core}.{self.format}"

    def prompt(self, name: str) -> str:
        return FORMATS[self.format].format(q=QUESTION_CORES[self.relation][self.core].format(n=name))


@dataclass(frozen=True)
class Document:
    """A training text; loss counts on its tokens from character `loss_from` on (0 for biographies)."""

    text: str
    loss_from: int


@dataclass(frozen=True)
class Span:
    """Characters `start:end` of a text hold a filled-in field: "n" (a person's name) or "v" (a value)."""

    start: int
    end: int
    field: str


def _filled(template: str, **fields: str) -> tuple[str, list[Span]]:
    """`template.format(**fields)` and the span of every field filled in."""
    text, spans = "", []
    for literal, name, _, _ in string.Formatter().parse(template):
        text += literal
        if name is not None:
            spans.append(Span(len(text), len(text) + len(fields[name]), name))
            text += fields[name]
    return text, spans


def write_jsonl(ontology: Ontology, path: str | Path) -> Path:
    """`ontology`'s examples as a user writes them: JSONL lines {"prompt", "concept", "answer", "entity", "split"}."""
    path = Path(path)
    lines = [
        json.dumps({"prompt": e.prompt, "concept": e.concept, "answer": e.answer, "entity": e.entity, "split": e.split})
        for e in ontology.examples
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def phrasings(extra_wordings: int = 0) -> list[Phrasing]:
    """Every question phrasing of every relation: cores 0–7 and the first `extra_wordings` extra training cores,
    × 4 formats."""
    if not 0 <= extra_wordings <= len(EXTRA_CORES):
        raise ValueError(f"extra_wordings must be in 0..{len(EXTRA_CORES)}, got {extra_wordings}")
    out = []
    for rel in RELATIONS:
        for core in range(EXTRA_CORES.start + extra_wordings):
            split = "heldout" if core in HELDOUT_CORES else "unseen" if core in UNSEEN_CORES else "train"
            out.extend(Phrasing(rel, core, f, split) for f in range(len(FORMATS)))
    return out


@dataclass
class BpeBioWorld(SavedParams):
    """`n_people` people with the six relations of the bio world, in English on GPT-2's tokenizer."""

    n_people: int = 2000
    seed: int = 0
    heldout_people: float = 0.2
    n_cities: int = 200
    n_universities: int = 150
    n_employers: int = 200
    n_majors: int = len(MAJORS)
    years: tuple[int, int] = (1940, 1999)
    max_day: int = 28
    name_pool: int = 80  # first- and last-name pool size
    qa_per_relation: int = 1  # training questions per train person and relation in one epoch
    extra_wordings: int = 0  # training question wordings beyond the five (`EXTRA_CORES`), 0–7
    people: list[Person] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        first, last = self.years  # a list when read from JSON
        self.years = (int(first), int(last))
        if not 0 < self.heldout_people < 1:
            raise ValueError(f"heldout_people is a fraction in (0, 1), got {self.heldout_people}")
        phrasings(self.extra_wordings)  # checks the range
        if not 2 <= self.n_majors <= len(MAJORS):
            raise ValueError(f"n_majors must be in 2..{len(MAJORS)}, got {self.n_majors}")
        tok = load_gpt2_tokenizer()
        rng = random.Random(self.seed)

        def pieces(text: str) -> int:
            return len(tok(" " + text, add_special_tokens=False)["input_ids"])

        def words(k: int, taken: set[str], lo: int, hi: int) -> list[str]:
            """`k` invented words of `lo`–`hi` BPE pieces (with a leading space)."""
            out: list[str] = []
            while len(out) < k:
                out += [w for w in invented_words(rng, k - len(out), taken) if lo <= pieces(w) <= hi]
            return out

        taken: set[str] = set()
        firsts, lasts = words(self.name_pool, taken, 1, 2), words(self.name_pool, taken, 1, 3)
        names = [f"{a} {b}" for a in firsts for b in lasts if 2 <= pieces(f"{a} {b}") <= 5]
        if len(names) < self.n_people:
            raise ValueError(f"name_pool {self.name_pool} gives {len(names)} names for {self.n_people} people")
        names = rng.sample(names, self.n_people)
        cities = [rng.choice(CITY_FORMS).format(w=w) for w in words(self.n_cities, taken, 2, 3)]
        universities = [rng.choice(UNIVERSITY_FORMS).format(w=w) for w in words(self.n_universities, taken, 1, 3)]
        employers = [rng.choice(EMPLOYER_FORMS).format(w=w) for w in words(self.n_employers, taken, 1, 3)]
        headquarters = {e: rng.choice(cities) for e in employers}
        n_heldout = round(self.heldout_people * self.n_people)
        self.people = []
        for i, name in enumerate(names):
            employer = rng.choice(employers)
            date = f"{rng.choice(MONTHS)} {rng.randint(1, self.max_day)}, {rng.randint(*self.years)}"
            attrs = {
                "BIRTH_DATE": date,
                "BIRTH_CITY": rng.choice(cities),
                "UNIVERSITY": rng.choice(universities),
                "MAJOR": rng.choice(MAJORS[: self.n_majors]),
                "EMPLOYER": employer,
                "WORK_CITY": headquarters[employer],
            }
            split = "heldout" if i >= self.n_people - n_heldout else "train"
            self.people.append(Person(f"P{i:04d}", name, split, attrs))

    # ---- text ----------------------------------------------------------------------------
    def phrasings(self) -> list[Phrasing]:
        """This world's question phrasings (`phrasings(self.extra_wordings)`)."""
        return phrasings(self.extra_wordings)

    def people_of(self, split: str) -> list[Person]:
        """The "train" people (questions trained on) or the "heldout" people (biographies only)."""
        if split not in ("train", "heldout"):
            raise ValueError(f"people split is 'train' or 'heldout', got {split!r}")
        return [p for p in self.people if p.split == split]

    def biography(self, person: Person, rng: random.Random) -> str:
        """One sentence per relation, a random paraphrase each, in random order."""
        return self.labelled_biography(person, rng)[0]

    def labelled_biography(self, person: Person, rng: random.Random) -> tuple[str, list[Span]]:
        """`biography(person, rng)` (the same text for the same `rng` state) and the character span of every
        name ("n") and attribute value ("v") in it, in order."""
        sentences = [_filled(rng.choice(BIO_SENTENCES[r]), n=person.name, v=person.attrs[r]) for r in RELATIONS]
        rng.shuffle(sentences)
        text, spans = "", []
        for sentence, sentence_spans in sentences:
            start = len(text) + (1 if text else 0)
            text += (" " if text else "") + sentence
            spans += [Span(start + s.start, start + s.end, s.field) for s in sentence_spans]
        return text, spans

    def documents(self, epoch_seed: int) -> list[Document]:
        """One epoch: a fresh biography of every person, and `qa_per_relation` training questions per relation of
        every train person, each `<prompt> <answer><|endoftext|>` with the loss on the answer and the stop."""
        rng = random.Random(f"{self.seed}/{epoch_seed}")
        train = [p for p in self.phrasings() if p.split == "train"]
        by_rel = {r: [p for p in train if p.relation == r] for r in RELATIONS}
        docs = []
        for person in self.people:
            docs.append(Document(self.biography(person, rng) + ENDOFTEXT, 0))
            if person.split == "train":
                for rel in RELATIONS:
                    for ph in rng.sample(by_rel[rel], self.qa_per_relation):
                        prompt = ph.prompt(person.name)
                        docs.append(Document(f"{prompt} {person.attrs[rel]}{ENDOFTEXT}", len(prompt)))
        return docs

    def vocabulary_ids(self, tokenizer) -> list[int]:
        """Every token id the world's texts can contain, sorted.

        GPT-2 pre-tokenizes at word boundaries, so a frame's tokens do not depend on the name or value put in it:
        frames are tokenized with a stand-in name, names with and without a leading space, values with one.
        """
        sentences = [s.format(n="Alice", v="Paris") for ss in BIO_SENTENCES.values() for s in ss]
        texts = sentences + [" " + s for s in sentences]  # first sentence of a biography, or a later one
        texts += [p.prompt("Alice") for p in self.phrasings()]
        texts += [t for p in self.people for t in (p.name, " " + p.name, *(" " + v for v in p.attrs.values()))]
        ids = tokenizer(texts + [ENDOFTEXT, " "], add_special_tokens=False)["input_ids"]
        return sorted({i for row in ids for i in row} | {tokenizer.bos_token_id})

    # ---- ontology ------------------------------------------------------------------------
    def ontology(self, heldout: str = "phrasings", n_people: int | None = None) -> Ontology:
        """The relation ontology a user would write: train = train people × training phrasings; heldout =
        train people × held-out phrasings ("phrasings"), held-out people × training phrasings ("people"), or
        train people × the phrasings in no split ("unseen"). `n_people` caps the people of each group."""
        groups = {
            "phrasings": ("train", "heldout"),
            "people": ("heldout", "train"),
            "unseen": ("train", "unseen"),
        }
        if heldout not in groups:
            raise ValueError(f"heldout must be one of {list(groups)}, got {heldout!r}")
        people_split, phrasing_split = groups[heldout]
        train_people = self.people_of("train")[:n_people]
        test_people = self.people_of(people_split)[:n_people]
        all_ph = self.phrasings()
        examples = [self._example(p, ph, "train") for ph in all_ph if ph.split == "train" for p in train_people]
        examples += [
            self._example(p, ph, "heldout") for ph in all_ph if ph.split == phrasing_split for p in test_people
        ]
        return Ontology([Concept(r, DESCRIPTIONS[r]) for r in RELATIONS], examples)

    def write_ontology(self, path: str | Path, heldout: str = "phrasings", n_people: int | None = None) -> Path:
        """`ontology(heldout, n_people)` as JSONL lines {"prompt", "concept", "answer", "entity", "split"}."""
        return write_jsonl(self.ontology(heldout, n_people), path)

    @staticmethod
    def _example(person: Person, ph: Phrasing, split: str) -> Example:
        rel = ph.relation
        index_of(RELATIONS, rel)
        return Example(ph.prompt(person.name), rel, " " + person.attrs[rel], person.name, split, ph.id)
