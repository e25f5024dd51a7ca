"""A seeded two-hop relational world: "Who is the {r2} of the {r1} of {e1} ?" with step-wise concept labels.

Atomic facts map (entity, relation) to one entity. A composition (e1, r1, r2) has bridge e2 = f(e1, r1) and
answer e3 = f(e2, r2). Two answer formats: "explicit" (the model writes "e2 e3", as in the official code) and
"implicit" (the model writes e3 only). Splits of the compositions:

  train    compositions seen in training (both atomic facts in-distribution)
  heldout  in-distribution compositions never trained on (both atomic facts are ID and trained as facts)
  ood      compositions that use at least one OOD atomic fact: such facts are trained as atomic QA but never
           appear inside a training composition (Wang et al. 2024's OOD split)

`layered=True` reproduces the official world instead: three groups of `layer_size` entities (E1 → E2 → E3), all
E1 × R × R compositions split half train / half held out (seed 42 shuffle), no OOD facts.

Step-wise labels (`relation_ontology`): an example's `template` is "step1/<frame>" or "step2/<frame>". Step 1 is
r1 read at the answer position (the last token of "Q: ... A:"); step 2 is r2 read at the bridge token (the
prompt "Q: ... A: e2", explicit format) or again at the answer position (implicit format, where no bridge is
written). Both steps use the same relation concepts. `entity_ontology` labels the answer position by the bridge e2.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from align_lens.ontology import Concept, Example, Ontology
from align_lens.worlds.bio import invented_words
from align_lens.worlds.params import SavedParams

NOUNS = (
    "friend",
    "boss",
    "coworker",
    "rival",
    "hero",
    "debtor",
    "mentor",
    "cousin",
    "classmate",
    "neighbor",
    "crush",
    "landlord",
    "doctor",
    "lawyer",
    "teacher",
    "partner",
    "coach",
    "tenant",
    "sponsor",
    "student",
)
# Two-hop frames: {e} entity, {r1} first relation, {r2} second relation. Held-out frames never appear in training.
TRAIN_FRAMES = (
    "Who is the {r2} of the {r1} of {e} ?",
    "Name the {r2} of the {r1} of {e} .",
    "Tell me the {r2} of the {r1} of {e} .",
    "Who is {e} 's {r1} 's {r2} ?",
)
HELDOUT_FRAMES = (
    "Which person is the {r2} of the {r1} of {e} ?",
    "Give me {e} 's {r1} 's {r2} .",
)
ATOMIC_FRAMES = ("Who is the {r} of {e} ?", "Name the {r} of {e} .", "Tell me the {r} of {e} .", "Who is {e} 's {r} ?")
# phrasing="compact": one short frame (as in Wang et al. 2024's "e1 r1 r2"), ~2x cheaper to train.
COMPACT_FRAME, COMPACT_ATOMIC_FRAME = "{e} {r1} {r2}", "{e} {r}"
PHRASINGS = ("natural", "compact")
QA_FORMAT = "Q: {q} A:"
EOS = "<eos>"
FORMATS = ("explicit", "implicit")
Format = Literal["explicit", "implicit"]
Frames = Literal["train", "heldout", "all"]


@dataclass(frozen=True)
class Composition:
    e1: str
    r1: str
    r2: str
    e2: str
    e3: str


FRAMES = {f"t{i}": f for i, f in enumerate(TRAIN_FRAMES)} | {f"h{i}": f for i, f in enumerate(HELDOUT_FRAMES)}
FRAMES["c0"] = COMPACT_FRAME


@dataclass
class TwoHopWorld(SavedParams):
    """Entities, relations, atomic facts and the three composition splits (see the module docstring)."""

    n_entities: int = 100
    n_relations: int = 20
    seed: int = 0
    ood_fraction: float = 0.05
    n_heldout: int = 2000
    n_train: int | None = None  # training compositions (default: every ID composition not held out)
    layered: bool = False
    phrasing: str = "natural"  # "natural": TRAIN_FRAMES / HELDOUT_FRAMES; "compact": "Q: e1 r1 r2 A:" only
    layer_size: int = 20
    entities: list[str] = field(init=False, repr=False)
    relations: list[str] = field(init=False, repr=False)
    facts: dict[tuple[str, str], str] = field(init=False, repr=False)
    ood_facts: set[tuple[str, str]] = field(init=False, repr=False)
    splits: dict[str, list[Composition]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.phrasing not in PHRASINGS:
            raise ValueError(f"phrasing must be one of {PHRASINGS}, got {self.phrasing!r}")
        if not 2 <= self.n_relations <= len(NOUNS):
            raise ValueError(f"n_relations must be in 2..{len(NOUNS)}, got {self.n_relations}")
        rng = random.Random(self.seed)
        taken = {w for t in _fixed_text() for w in t.split()}
        self.relations = [n.upper() for n in NOUNS[: self.n_relations]]
        if self.layered:
            self._build_layered(rng, taken)
        else:
            self._build_random(rng, taken)

    def _build_random(self, rng: random.Random, taken: set[str]) -> None:
        if self.n_entities < 3:
            raise ValueError(f"n_entities must be at least 3, got {self.n_entities}")
        self.entities = invented_words(rng, self.n_entities, taken)
        self.facts = {
            (e, r): rng.choice([x for x in self.entities if x != e]) for e in self.entities for r in self.relations
        }
        keys = list(self.facts)
        self.ood_facts = set(rng.sample(keys, round(self.ood_fraction * len(keys))))
        ids, ood = [], []
        for e1 in self.entities:
            for r1 in self.relations:
                for r2 in self.relations:
                    c = self.compose(e1, r1, r2)
                    is_ood = (e1, r1) in self.ood_facts or (c.e2, r2) in self.ood_facts
                    (ood if is_ood else ids).append(c)
        rng.shuffle(ids)
        if self.n_heldout >= len(ids):
            raise ValueError(f"n_heldout={self.n_heldout} leaves no training compositions of {len(ids)}")
        heldout, rest = ids[: self.n_heldout], ids[self.n_heldout :]
        self.splits = {"train": self._first_n_train(rest), "heldout": heldout, "ood": ood}

    def _build_layered(self, rng: random.Random, taken: set[str]) -> None:
        groups = [invented_words(rng, self.layer_size, taken) for _ in range(3)]
        self.entities = [e for g in groups for e in g]
        self.facts = {}
        for src, dst in ((groups[0], groups[1]), (groups[1], groups[2])):
            self.facts |= {(e, r): rng.choice(dst) for e in src for r in self.relations}
        self.ood_facts = set()
        comps = [self.compose(e1, r1, r2) for e1 in groups[0] for r1 in self.relations for r2 in self.relations]
        random.Random(42).shuffle(comps)
        if not 0 < self.n_heldout < len(comps):
            raise ValueError(f"n_heldout must be in 1..{len(comps) - 1}, got {self.n_heldout}")
        cut = len(comps) - self.n_heldout
        self.splits = {"train": self._first_n_train(comps[:cut]), "heldout": comps[cut:], "ood": []}

    def _first_n_train(self, rest: list[Composition]) -> list[Composition]:
        if self.n_train is not None and not 0 < self.n_train <= len(rest):
            raise ValueError(
                f"n_train={self.n_train} but the world leaves {len(rest)} training compositions; "
                f"give 1..{len(rest)} or None (all of them)"
            )
        return rest if self.n_train is None else rest[: self.n_train]

    # ---- facts and text ---------------------------------------------------------------------
    def compose(self, e1: str, r1: str, r2: str) -> Composition:
        e2 = self.facts[(e1, r1)]
        return Composition(e1, r1, r2, e2, self.facts[(e2, r2)])

    def bridges(self) -> list[str]:
        """Entities that can be a bridge e2 (all of them, or the middle layer of the layered world)."""
        return self.entities[self.layer_size : 2 * self.layer_size] if self.layered else list(self.entities)

    def frame_ids(self, split: str = "all") -> list[str]:
        """Ids of the two-hop frames of this world's phrasing: "t0".. training, "h0".. held-out, "c0" compact;
        `split` "train", "heldout" or "all"."""
        ids = ["c0"] if self.phrasing == "compact" else list(FRAMES)[: len(TRAIN_FRAMES) + len(HELDOUT_FRAMES)]
        if split == "all":
            return ids
        return [f for f in ids if (f[0] == "h") == (split == "heldout")]

    def atomic_frames(self) -> tuple[str, ...]:
        return (COMPACT_ATOMIC_FRAME,) if self.phrasing == "compact" else ATOMIC_FRAMES

    @staticmethod
    def question(c: Composition, frame: str = "t0") -> str:
        """The prompt "Q: <question> A:" for a composition in frame `frame` (an id of `frame_ids()`)."""
        text = FRAMES[frame].format(e=c.e1, r1=c.r1.lower(), r2=c.r2.lower())
        return QA_FORMAT.format(q=text)

    def atomic_question(self, entity: str, relation: str, frame: int = 0) -> str:
        return QA_FORMAT.format(q=self.atomic_frames()[frame].format(e=entity, r=relation.lower()))

    @staticmethod
    def answer(c: Composition, fmt: Format = "explicit") -> str:
        """What the model writes after the prompt ("e2 e3" or "e3"), without <eos>."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        return f"{c.e2} {c.e3}" if fmt == "explicit" else c.e3

    def vocabulary(self) -> list[str]:
        words = {w for t in _fixed_text() for w in t.split()} - {"{e}", "{r}", "{r1}", "{r2}", "{q}"}
        return sorted(words | set(self.entities) | {r.lower() for r in self.relations})

    # ---- ontologies -------------------------------------------------------------------------
    def labelled(
        self,
        n_train: int | None,
        n_heldout: int | None,
        seed: int,
        heldout_frames: Frames = "train",
        per_bridge: bool = False,
    ) -> list[tuple[Composition, str, str]]:
        """(composition, frame id, split), one seeded frame per item: training compositions in training frames,
        held-out compositions in `heldout_frames` ("train", "heldout" or "all" frames). `per_bridge` spreads the
        training items evenly over the bridge entities."""
        if heldout_frames not in ("train", "heldout", "all"):
            raise ValueError(f"heldout_frames must be 'train', 'heldout' or 'all', got {heldout_frames!r}")
        rng = random.Random(f"ontology/{self.seed}/{seed}")
        train, held = list(self.splits["train"]), list(self.splits["heldout"])
        rng.shuffle(train)
        rng.shuffle(held)
        if per_bridge and n_train is not None:
            k = -(-n_train // len(self.bridges()))
            taken: dict[str, list[Composition]] = {}
            for c in train:
                group = taken.setdefault(c.e2, [])
                if len(group) < k:
                    group.append(c)
            train = [c for group in taken.values() for c in group]
            rng.shuffle(train)
        train_frames, held_pool = self.frame_ids("train"), self.frame_ids(heldout_frames)
        if not held_pool:
            raise ValueError(
                f"this world's phrasing {self.phrasing!r} has no held-out frames; use heldout_frames='train'"
            )
        out = [(c, rng.choice(train_frames), "train") for c in train[:n_train]]
        return out + [(c, rng.choice(held_pool), "heldout") for c in held[:n_heldout]]

    def relation_ontology(
        self,
        fmt: Format = "explicit",
        steps: tuple[int, ...] = (1, 2),
        n_train: int | None = 4000,
        n_heldout: int | None = None,
        seed: int = 0,
        heldout_frames: Frames = "train",
    ) -> Ontology:
        """Relation concepts labelled per step (template "step<k>/<frame>"); `n_*` compositions per split,
        held-out compositions phrased in `heldout_frames` (see `labelled`)."""
        if fmt not in FORMATS:
            raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
        if not steps or set(steps) - {1, 2}:
            raise ValueError(f"steps must be a non-empty subset of (1, 2), got {steps}")
        examples = []
        for c, frame, split in self.labelled(n_train, n_heldout, seed, heldout_frames):
            prompt = self.question(c, frame)
            if 1 in steps:
                examples.append(Example(prompt, c.r1, self.answer(c, fmt), c.e1, split, f"step1/{frame}"))
            if 2 in steps:
                p2 = f"{prompt} {c.e2}" if fmt == "explicit" else prompt
                examples.append(Example(p2, c.r2, c.e3, c.e2, split, f"step2/{frame}"))
        return Ontology([Concept(r, f"the relation '{r.lower()}'") for r in self.relations], examples)

    def entity_ontology(
        self,
        fmt: Format = "explicit",
        n_train: int | None = 4000,
        n_heldout: int | None = None,
        seed: int = 0,
        heldout_frames: Frames = "train",
    ) -> Ontology:
        """Bridge-entity concepts: the answer position of each question labelled by its bridge e2."""
        examples = [
            Example(self.question(c, frame), c.e2, self.answer(c, fmt), c.e1, split, f"bridge/{frame}")
            for c, frame, split in self.labelled(n_train, n_heldout, seed, heldout_frames, per_bridge=True)
        ]
        used = {e.concept for e in examples if e.split == "train"}
        return Ontology([Concept(e, "bridge entity") for e in self.bridges() if e in used], examples)

    # ---- parameters -------------------------------------------------------------------------

    def summary(self) -> dict[str, int]:
        return {
            "entities": len(self.entities),
            "relations": len(self.relations),
            "atomic_facts": len(self.facts),
            "ood_facts": len(self.ood_facts),
            **{f"{k}_compositions": len(v) for k, v in self.splits.items()},
        }


def step_of(example: Example) -> str:
    """ "step1", "step2" or "bridge": the part of an example's template before the frame id."""
    return (example.template or "").split("/")[0]


def select_step(ontology: Ontology, step: str) -> Ontology:
    """The examples of one step ("step1", "step2", "bridge") with the same concepts."""
    return Ontology(ontology.concepts, [e for e in ontology.examples if step_of(e) == step])


def _fixed_text() -> list[str]:
    return [*FRAMES.values(), *ATOMIC_FRAMES, COMPACT_ATOMIC_FRAME, QA_FORMAT, EOS]


def make_two_hop_world(official: bool = False, seed: int = 0, **kwargs) -> TwoHopWorld:
    """The default random world (100 entities × 20 relations) or, with `official=True`, the official layered
    20/20/20 world with its 4,000 / 4,000 split."""
    if official:
        return TwoHopWorld(layered=True, seed=seed, n_heldout=4000, ood_fraction=0.0, **kwargs)
    return TwoHopWorld(seed=seed, **kwargs)
