"""Ontology: the concepts to align and the labelled prompts that define them."""

from __future__ import annotations

import csv
import json
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

SPLITS = ("train", "heldout")


class OntologyError(ValueError):
    """An ontology that cannot be used as given; the message says how to fix it."""


@dataclass(frozen=True)
class Concept:
    name: str
    description: str = ""


@dataclass(frozen=True)
class Example:
    """One labelled prompt. `answer` is what the model should produce after the prompt."""

    prompt: str
    concept: str
    answer: str | None = None
    entity: str | None = None
    split: str = "train"
    template: str | None = None


@dataclass
class Ontology:
    """Ordered, unique concepts plus labelled examples split into train / heldout."""

    concepts: list[Concept]
    examples: list[Example] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.concepts = [Concept(c) if isinstance(c, str) else c for c in self.concepts]
        self.examples = [Example(**e) if isinstance(e, Mapping) else e for e in self.examples]
        self._validate()

    # ---- validation ------------------------------------------------------------------
    def _validate(self) -> None:
        names = [c.name for c in self.concepts]
        dup = [n for n, k in Counter(names).items() if k > 1]
        if dup:
            raise OntologyError(f"duplicate concept name(s) {dup}: concept names must be unique.")
        if len(names) < 2:
            raise OntologyError(
                f"an ontology needs at least two concepts, got {names or 'none'}; "
                "binding is a choice between concepts, so add another concept."
            )
        known = set(names)
        for i, ex in enumerate(self.examples):
            if ex.concept not in known:
                raise OntologyError(
                    f"example {i} has unknown concept label {ex.concept!r}; "
                    f"known concepts are {names}. Add the concept or fix the label."
                )
            if not ex.prompt or not ex.prompt.strip():
                raise OntologyError(f"example {i} ({ex.concept}) has an empty prompt.")
            if ex.split not in SPLITS:
                raise OntologyError(f"example {i} has split {ex.split!r}; use one of {SPLITS}.")
        if self.examples:
            counts = Counter(ex.concept for ex in self.examples if ex.split == "train")
            missing = [n for n in names if counts[n] == 0]
            if missing:
                raise OntologyError(
                    f"concept(s) {missing} have no training example; give each concept at least one "
                    "example with split='train'."
                )
            lo, hi = min(counts.values()), max(counts.values())
            if hi > 3 * lo:
                warnings.warn(
                    f"training labels are imbalanced ({dict(counts)}); the rarest concept has "
                    f"{lo} examples and the most common {hi}.",
                    stacklevel=3,
                )

    # ---- access ----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def index(self, name: str) -> int:
        """Position of a concept; unknown names raise with the known ones listed."""
        try:
            return self.names.index(name)
        except ValueError:
            raise KeyError(f"unknown concept {name!r}; known concepts are {self.names}") from None

    def select(self, split: str | None = None) -> list[Example]:
        if split is not None and split not in SPLITS:
            raise OntologyError(f"unknown split {split!r}; use one of {SPLITS}.")
        return [e for e in self.examples if split is None or e.split == split]

    def prompts(self, split: str | None = None) -> list[str]:
        return [e.prompt for e in self.select(split)]

    def labels(self, split: str | None = None) -> torch.Tensor:
        """Concept indices of the examples of `split`, as a long tensor."""
        lookup = {n: i for i, n in enumerate(self.names)}
        return torch.tensor([lookup[e.concept] for e in self.select(split)], dtype=torch.long)

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per concept and split."""
        out = {n: dict.fromkeys(SPLITS, 0) for n in self.names}
        for e in self.examples:
            out[e.concept][e.split] += 1
        return out

    def __repr__(self) -> str:
        rows = "\n".join(
            f"  {n:<20} " + " ".join(f"{s}={k:<6}" for s, k in c.items()) for n, c in self.counts().items()
        )
        return f"Ontology({self.n_concepts} concepts, {len(self.examples)} examples)\n{rows}"

    # ---- constructors and serialisation ----------------------------------------------
    @classmethod
    def from_records(
        cls, records: Iterable[Mapping], concepts: Sequence[str | Concept | Mapping] | None = None
    ) -> Ontology:
        """Build from dicts with keys prompt, concept, [answer, entity, split, template].

        Concept order is `concepts` if given, else order of first appearance.
        """
        fields = set(Example.__dataclass_fields__)
        examples = []
        for i, r in enumerate(records):
            extra = set(r) - fields
            if extra:
                raise OntologyError(f"record {i} has unknown field(s) {sorted(extra)}; allowed: {sorted(fields)}")
            if "prompt" not in r or "concept" not in r:
                raise OntologyError(f"record {i} needs both 'prompt' and 'concept' fields, got {sorted(r)}")
            examples.append(Example(**{k: v for k, v in r.items() if v not in ("", None)}))
        if concepts is None:
            concepts = list(dict.fromkeys(e.concept for e in examples))
        parsed = [Concept(**c) if isinstance(c, Mapping) else c for c in concepts]
        return cls(parsed, examples)

    @classmethod
    def from_jsonl(cls, path: str | Path, concepts: Sequence[str] | None = None) -> Ontology:
        with open(path) as f:
            records = [json.loads(line) for line in f if line.strip()]
        return cls.from_records(records, concepts)

    @classmethod
    def from_csv(cls, path: str | Path, concepts: Sequence[str] | None = None) -> Ontology:
        with open(path, newline="") as f:
            return cls.from_records(list(csv.DictReader(f)), concepts)

    def to_dict(self) -> dict:
        return {"concepts": [asdict(c) for c in self.concepts], "examples": [asdict(e) for e in self.examples]}

    def to_json(self, path: str | Path | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=1)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Ontology:
        """Load from a JSON string or a path written by `to_json`."""
        text = Path(source).read_text() if not str(source).lstrip().startswith("{") else str(source)
        d = json.loads(text)
        return cls([Concept(**c) for c in d["concepts"]], [Example(**e) for e in d["examples"]])
