"""Ontology: the concepts to align and the labelled prompts that define them."""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import json
import operator
import unicodedata
import warnings
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from align_lens import ontology_files
from align_lens.errors import OntologyError

SPLITS = ("train", "heldout")


SHOWN_NAMES = 20  # error messages list at most this many names


def some_names(names: Iterable[str]) -> str:
    """`names` for an error message: the first SHOWN_NAMES, then how many more there are."""
    names = list(names)
    if len(names) <= SHOWN_NAMES:
        return str(names)
    return f"{names[:SHOWN_NAMES]} and {len(names) - SHOWN_NAMES:,} more"


def index_of(names: Sequence[str], name: str) -> int:
    """Position of concept `name` in `names` (one scan); an unknown name raises a KeyError listing known ones."""
    try:
        return list(names).index(name)
    except ValueError:
        raise KeyError(f"unknown concept {name!r}; known concepts are {some_names(names)}") from None


def as_examples(source: Ontology | Iterable[Example]) -> list[Example]:
    """Every example of an Ontology, or the given examples as a list."""
    return source.select() if isinstance(source, Ontology) else list(source)


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
        self.concepts = [_concept(c, i) for i, c in enumerate(self.concepts)]
        self.examples = [_example(e, f"example {i}") for i, e in enumerate(self.examples)]
        self._validate(Numbered("example"))

    @classmethod
    def _of_checked(cls, concepts: list[Concept], examples: list[Example], where: Sequence[str]) -> Ontology:
        """An ontology of concepts and examples already normalised (by `_concept` / `_example`): validated once,
        with `where` naming each example in error messages, without `__post_init__`'s second per-example pass."""
        onto = cls.__new__(cls)
        onto.concepts, onto.examples = concepts, examples
        onto._validate(where)
        return onto

    # ---- validation ------------------------------------------------------------------
    def _validate(self, where: Sequence[str]) -> None:
        """Whole-ontology checks (unique names, ≥ 2 concepts, consistent prompts, known labels, each concept
        trained); `where[i]` names example i in messages."""
        names = [c.name for c in self.concepts]
        dup = [n for n, k in Counter(names).items() if k > 1]
        if dup:
            raise OntologyError(
                f"duplicate concept name(s) {some_names(dup)} (names are compared after stripping surrounding whitespace "
                "and Unicode NFC normalisation): "
                "concept names must be unique."
            )
        if len(names) < 2:
            raise OntologyError(
                f"an ontology needs at least two concepts, got {names or 'none'}; "
                "binding is a choice between concepts, so add another concept."
            )
        _check_consistent(self.examples, where)
        known = set(names)
        for i, ex in enumerate(self.examples):
            if ex.concept not in known:
                raise OntologyError(
                    f"{where[i]} has unknown concept label {ex.concept!r}; "
                    f"known concepts are {some_names(names)}. Add the concept or fix the label."
                )
        if self.examples:
            counts = Counter(ex.concept for ex in self.examples if ex.split == "train")
            missing = [n for n in names if counts[n] == 0]
            if missing:
                raise OntologyError(
                    f"concept(s) {some_names(missing)} have no training example; give each concept at least one "
                    "example with split='train'."
                )
            lo, hi = min(counts.values()), max(counts.values())
            if hi > 3 * lo:
                warnings.warn(
                    f"training labels are imbalanced ({some_names(f'{n}: {k}' for n, k in counts.items())}); the rarest "
                    "concept has "
                    f"{lo} examples and the most common {hi}.",
                    stacklevel=3,
                )
        self._positions = {c.name: i for i, c in enumerate(self.concepts)}

    # ---- access ----------------------------------------------------------------------
    @property
    def names(self) -> list[str]:
        return [c.name for c in self.concepts]

    @property
    def n_concepts(self) -> int:
        return len(self.concepts)

    def index(self, name: str) -> int:
        """Position of a concept (a dict lookup); unknown names raise with the known ones listed."""
        if name not in self._positions:
            raise KeyError(f"unknown concept {name!r}; known concepts are {some_names(self.names)}")
        return self._positions[name]

    def select(self, split: str | None = None) -> list[Example]:
        if split is not None and split not in SPLITS:
            raise OntologyError(f"unknown split {split!r}; use one of {SPLITS}.")
        return [e for e in self.examples if split is None or e.split == split]

    def prompts(self, split: str | None = None) -> list[str]:
        return [e.prompt for e in self.select(split)]

    def labels(self, split: str | None = None, order: Sequence[str] | None = None) -> torch.Tensor:
        """Concept indices of the examples of `split`, as a long tensor.

        Indices are positions in `order` (e.g. an SAE's `concept_names`, so labels match its slots by name;
        default: this ontology's own order). `order` must hold exactly this ontology's concepts.
        """
        order = self.names if order is None else self.check_names(order)
        lookup = {n: i for i, n in enumerate(order)}
        return torch.tensor([lookup[e.concept] for e in self.select(split)], dtype=torch.long)

    def check_names(self, names: Sequence[str], what: str = "the SAE") -> list[str]:
        """`names` as a list if they are this ontology's concepts in any order; else raise naming the difference."""
        names = list(names)
        if sorted(names) != sorted(self.names):
            missing, extra = sorted(set(self.names) - set(names)), sorted(set(names) - set(self.names))
            raise OntologyError(
                f"{what} has concepts {some_names(names)} but the ontology has {some_names(self.names)} "
                f"(only in the ontology: {some_names(missing)}; only in {what}: {some_names(extra)}); use the "
                "ontology it was aligned with."
            )
        return names

    def fingerprint(self) -> str:
        """sha256 (first 16 hex digits) of the concept names and every example: equal iff the content is."""
        rows = [repr([(c.name, c.description) for c in self.concepts])]
        fields = operator.attrgetter(*_FIELDS)  # the same tuple as getattr field by field, read in C
        rows += [repr(fields(e)) for e in self.examples]
        return hashlib.sha256("\n".join(rows).encode("utf-8", "surrogatepass")).hexdigest()[:16]

    def counts(self) -> dict[str, dict[str, int]]:
        """Examples per concept and split."""
        out: dict[str, dict[str, int]] = {n: {s: 0 for s in SPLITS} for n in self.names}
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
        cls,
        records: Iterable[Mapping | Example],
        concepts: Sequence[str | Concept | Mapping] | None = None,
        sources: Sequence[str] | None = None,
    ) -> Ontology:
        """Build from dicts with keys prompt, concept, [answer, entity, split, template].

        Concept order is `concepts` if given, else order of first appearance. `sources` names each record in
        error messages (e.g. "data.jsonl line 4"). Text is stripped of surrounding whitespace in concept names;
        empty answer / entity / template mean "none"; an empty or unknown split is refused.
        """
        if isinstance(records, (str, bytes, Mapping)) or not isinstance(records, Iterable):
            raise OntologyError(f"records must be a list of objects, got {type(records).__name__}")
        where = sources or Numbered("record")
        with _bulk():
            examples = [_example(r, where[i]) for i, r in enumerate(records)]
        if concepts is None:
            concepts = list(dict.fromkeys(e.concept for e in examples))
        elif isinstance(concepts, (str, bytes, Mapping)) or not isinstance(concepts, Iterable):
            raise OntologyError(f"concepts must be a list of names, got {type(concepts).__name__}")
        parsed = [_concept(c, i) for i, c in enumerate(concepts)]
        return cls._of_checked(parsed, examples, where)

    @classmethod
    def load(cls, path: str | Path, concepts: Sequence[str] | None = None) -> Ontology:
        """Read a .jsonl, .csv or .json ontology file (suffix in any case)."""
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            return cls.from_jsonl(path, concepts)
        if suffix == ".csv":
            return cls.from_csv(path, concepts)
        if suffix == ".json":
            onto = cls.from_json(path)
            return onto if concepts is None else cls.from_records(onto.examples, concepts)
        raise OntologyError(
            f"{path}: unknown ontology file type {path.suffix!r}; use one of {ontology_files.SUFFIXES}."
        )

    @classmethod
    def from_jsonl(cls, path: str | Path, concepts: Sequence[str] | None = None) -> Ontology:
        """One JSON object per line; errors name the file and the line."""
        with _bulk():
            records, sources = ontology_files.jsonl_records(Path(path))
            return ontology_files.naming_file(Path(path), lambda: cls.from_records(records, concepts, sources))

    @classmethod
    def from_csv(cls, path: str | Path, concepts: Sequence[str] | None = None) -> Ontology:
        """A header row with at least prompt and concept; errors name the file and the line."""
        with _bulk():
            records, sources = ontology_files.csv_records(Path(path))
            return ontology_files.naming_file(Path(path), lambda: cls.from_records(records, concepts, sources))

    def to_dict(self) -> dict:
        return {
            "concepts": [{"name": c.name, "description": c.description} for c in self.concepts],
            "examples": [{f: getattr(e, f) for f in _FIELDS} for e in self.examples],
        }

    def to_json(self, path: str | Path | None = None) -> str:
        """The ontology as JSON text, one concept or example per line (written to `path` when given)."""
        d = self.to_dict()
        rows = {k: ",\n".join(json.dumps(r) for r in d[k]) for k in d}
        text = f'{{"concepts": [\n{rows["concepts"]}\n],\n"examples": [\n{rows["examples"]}\n]}}'
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_json(cls, source: str | Path) -> Ontology:
        """Load from a JSON string or a path written by `to_json`."""
        examples, concepts, sources, where = ontology_files.json_document(source)
        if isinstance(where, Path):
            return ontology_files.naming_file(where, lambda: cls.from_records(examples, concepts, sources))
        return cls.from_records(examples, concepts, sources)


# ---- record checks ------------------------------------------------------------------------------
@contextlib.contextmanager
def _bulk():
    """Python's cyclic garbage collector paused while records are built (a million acyclic records otherwise
    trigger repeated full collections: about a fifth of the load time); restored as it was."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


class Numbered(Sequence[str]):
    """`"<what> i"` for every index i: the names of unnamed records in messages, made only when one is shown."""

    def __init__(self, what: str):
        self.what = what

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, i):  # ints only: the index of a record
        return f"{self.what} {i}"


_OPTIONAL = ("answer", "entity", "template")
_FIELDS = tuple(Example.__dataclass_fields__)
_FIELD_SET = frozenset(_FIELDS)


def _is_checked(e: Example) -> bool:
    """Whether `e` is already what `_example` would return (so a second check costs one pass of cheap tests)."""
    text = (e.prompt, e.concept)
    if not all(isinstance(t, str) and t.strip() for t in text) or e.split not in SPLITS:
        return False
    optional = (e.answer, e.entity, e.template)
    return all(v is None or (isinstance(v, str) and v) for v in optional) and _name(e.concept) == e.concept


def _check_consistent(examples: Sequence[Example], where: Sequence[str]) -> None:
    """A prompt has one concept and one split: a prompt repeated with another concept or in the other split
    raises naming both records."""
    first: dict[str, int] = {}
    for i, e in enumerate(examples):
        j = first.setdefault(e.prompt, i)
        a = examples[j]
        if a.concept != e.concept:
            raise OntologyError(
                f"{where[j]} and {where[i]} give the same prompt {e.prompt!r} two concepts ({a.concept!r} and "
                f"{e.concept!r}); a prompt has one concept: fix or drop one of them."
            )
        if a.split != e.split:
            raise OntologyError(
                f"{where[j]} and {where[i]} put the same prompt {e.prompt!r} in both splits ({a.split!r} and "
                f"{e.split!r}), so held-out binding would be measured on training data; keep it in one split."
            )


@functools.lru_cache(maxsize=1 << 16)  # concept labels repeat across examples
def _name(text: str) -> str:
    """A concept name as compared: surrounding whitespace stripped, Unicode NFC (so NFC and NFD "CAFÉ" agree)."""
    return unicodedata.normalize("NFC", text.strip())


def _concept(c: str | Concept | Mapping, i: int) -> Concept:
    """A Concept with its name stripped; anything else raises saying what concept `i` should look like."""
    if isinstance(c, Concept):
        name, description = c.name, c.description
    elif isinstance(c, Mapping):
        extra = set(c) - {"name", "description"}
        if extra or "name" not in c:
            raise OntologyError(f"concept {i} must have a 'name' (and optionally 'description'), got keys {sorted(c)}")
        name, description = c["name"], c.get("description", "")
    else:
        name, description = c, ""
    if not isinstance(name, str) or not name.strip():
        raise OntologyError(f"concept {i} needs a non-empty text name, got {name!r}")
    if not isinstance(description, str):
        raise OntologyError(f"concept {i} ({name!r}) description must be text, got {type(description).__name__}")
    return Concept(_name(name), description)


def _example(e: Example | Mapping, where: str) -> Example:
    """A checked Example: text fields are text, prompt and concept non-empty, split one of SPLITS."""
    if isinstance(e, Example):
        if _is_checked(e):
            return e
        e = {f: getattr(e, f) for f in _FIELDS}
    if not isinstance(e, (dict, Mapping)):  # dict first: the ABC check is slow, and parsed records are dicts
        raise OntologyError(f"{where} must be an object with 'prompt' and 'concept' fields, got {type(e).__name__}")
    if not e.keys() <= _FIELD_SET:  # a view comparison: no set is built per record
        extra = {str(k) for k in e} - _FIELD_SET
        raise OntologyError(f"{where} has unknown field(s) {sorted(extra)}; allowed: {sorted(_FIELD_SET)}")
    if "prompt" not in e or "concept" not in e:
        raise OntologyError(f"{where} needs both 'prompt' and 'concept' fields, got {sorted(map(str, e))}")
    out = {}
    for key in ("prompt", "concept"):
        value = e[key]
        if value is not None and not isinstance(value, str):
            raise OntologyError(f"{where}: {key} must be text, got {type(value).__name__} {value!r}")
        if value is None or not value.strip():
            raise OntologyError(f"{where} has an empty {key}.")
        out[key] = value
    out["concept"] = _name(out["concept"])
    split = e.get("split", "train")
    if split not in SPLITS:
        raise OntologyError(f"{where} has split {split!r}; use one of {SPLITS} (or leave the field out for train).")
    out["split"] = split
    for key in _OPTIONAL:
        value = e.get(key)
        if value is not None and not isinstance(value, str):
            raise OntologyError(f"{where}: {key} must be text, got {type(value).__name__} {value!r}; quote it.")
        out[key] = value if value else None
    return Example(**out)
