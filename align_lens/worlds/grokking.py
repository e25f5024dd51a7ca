"""The grokking diagnostic: concept binding of aligned SAEs tracked over a base model's training checkpoints.

At each checkpoint of an implicit-format two-hop model (the model answers e3 without writing the bridge) we
record its train / held-out / OOD composition accuracy and fit Stage 1 (`pretrain_sae`) + Stage 2 (`align`) on
TRAINING questions only, then score binding on HELD-OUT compositions. One Stage-1 SAE per checkpoint, one
Stage-2 fit per series: relation slots for step 1 (r1) and for step 2 (r2) and bridge-entity slots (e2), all read at
the answer position, and (compact phrasing) bridge-entity slots at the r1 token, where the first hop can already be
computed. Unlike the official analysis (a separate SAE per epoch scored on its own training items, and no
accuracy per epoch), binding here is out-of-sample and lined up against the model's own generalisation.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from align_lens.activations.gather import gather_activations
from align_lens.evals.binding import binding_metrics, encode_in_chunks
from align_lens.files import strict_json
from align_lens.training.config import AlignConfig, Runtime, Stage1Config
from align_lens.training.stage1 import pretrain_sae
from align_lens.training.stage2 import align
from align_lens.worlds.two_hop import TwoHopWorld, make_two_hop_world
from align_lens.worlds.two_hop_model import LOG_FILE, WORLD_FILE, checkpoint_steps, load_checkpoint, train_two_hop_model

SERIES = ("relation_step1", "relation_step2", "bridge_entity", "bridge_entity_at_r1")
SPLITS = ("train", "heldout")
R1_INDEX = 3  # token index of r1 in the compact prompt "<bos> Q: e1 r1 r2 A:"
ACCURACY = ("train", "heldout", "ood")


@dataclass
class GrokkingConfig:
    """Settings of `run_grokking`. The defaults are the measured CPU recipe (docs/two_hop.md)."""

    out_dir: str = "runs/grokking"
    model_dir: str | None = None  # an implicit model with checkpoints; None: train one into out_dir/model
    steps: int = 4000
    checkpoint_every: int = 250
    lr: float = 2e-3  # base-model learning rate (1e-3 reached held-out only 0.88 by step 5,000)
    n_entities: int = 100
    n_relations: int = 20
    world_seed: int = 0
    world_heldout: int = 2000  # held-out compositions of the world
    phrasing: str = "compact"  # "Q: e1 r1 r2 A:" (about half the training cost of the natural frames)
    hook_name: str = "blocks.2.hook_resid_post"
    n_train: int = 2000  # training questions for Stage 1 / Stage 2
    n_heldout: int = 1000  # held-out compositions scored
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(d_sae=256, k=8, steps=300, batch_size=256))
    align_epochs: int = 8
    seed: int = 0
    device: str = "cpu"
    threads: int = 1
    progress: bool = False


def crossing(steps: list[int], values: list[float], threshold: float) -> int | None:
    """First step whose value is ≥ `threshold` (None if never)."""
    return next((s for s, v in zip(steps, values) if v >= threshold), None)


def _series(rows: list[dict[str, Any]], key: str) -> list[float]:
    return [r[key] for r in rows]


def binding_at_checkpoint(model, world: TwoHopWorld, cfg: GrokkingConfig) -> dict[str, float]:
    """One Stage-1 SAE and one Stage-2 fit per series, on training questions; held-out top-1 binding of each
    (see the module docstring). With the compact phrasing the bridge entity is also read at the r1 token."""
    ent = world.entity_ontology("implicit", cfg.n_train, cfg.n_heldout, cfg.seed)
    sites: dict[str, tuple[Any, str | int]] = {  # series -> (ontology, position)
        "relation_step1": (world.relation_ontology("implicit", (1,), cfg.n_train, cfg.n_heldout, cfg.seed), "last"),
        "relation_step2": (world.relation_ontology("implicit", (2,), cfg.n_train, cfg.n_heldout, cfg.seed), "last"),
        "bridge_entity": (ent, "last"),
    }
    if world.phrasing == "compact":
        sites["bridge_entity_at_r1"] = (ent, R1_INDEX)
    acts: dict[tuple, dict[str, torch.Tensor]] = {}
    for onto, pos in sites.values():
        key = (tuple(onto.prompts("train")), pos)  # the relation ontologies share their prompts
        if key not in acts:
            acts[key] = {s: gather_activations(model, onto.prompts(s), cfg.hook_name, pos, 256) for s in SPLITS}
    stage1_acts = torch.cat([a["train"] for a in acts.values()])
    runtime = Runtime(device=cfg.device, seed=cfg.seed, progress=cfg.progress)
    batch_size = min(cfg.stage1.batch_size, len(stage1_acts))
    sae = pretrain_sae(
        stage1_acts, replace(cfg.stage1, batch_size=batch_size, hook_name=cfg.hook_name, runtime=runtime)
    )
    out = {}
    for name, (onto, pos) in sites.items():
        a = acts[(tuple(onto.prompts("train")), pos)]
        aligned = align(
            sae,
            onto,
            activations=a["train"],
            config=AlignConfig(epochs=cfg.align_epochs, runtime=runtime),
        )
        z = encode_in_chunks(aligned, a["heldout"], concepts_only=True)
        out[name] = binding_metrics(z, onto.labels("heldout"), onto.names)["accuracy"]
    return out


def run_grokking(cfg: GrokkingConfig) -> dict[str, Any]:
    """Train (or load) the implicit model's checkpoints; per checkpoint accuracy + held-out binding; writes
    grokking.json and grokking.html into `cfg.out_dir` and returns the JSON record."""
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    try:
        out = Path(cfg.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        model_dir = Path(cfg.model_dir) if cfg.model_dir else out / "model"
        if cfg.model_dir is None:
            world = make_two_hop_world(
                seed=cfg.world_seed,
                n_entities=cfg.n_entities,
                n_relations=cfg.n_relations,
                n_heldout=cfg.world_heldout,
                phrasing=cfg.phrasing,
            )
            train_two_hop_model(
                world,
                model_dir,
                "implicit",
                steps=cfg.steps,
                lr=cfg.lr,
                seed=cfg.seed,
                device=cfg.device,
                threads=cfg.threads,
                checkpoint_every=cfg.checkpoint_every,
                eval_every=cfg.checkpoint_every,
                progress=cfg.progress,
            )
        train_s = time.time() - t0
        world, log = _trained_run(model_dir)
        rows = []
        saved = checkpoint_steps(model_dir)
        for step in saved:
            if step not in log or (step % cfg.checkpoint_every and step != saved[-1]):
                continue  # analyse every `checkpoint_every` steps and the final model, where the accuracy was logged
            model = load_checkpoint(model_dir, step, cfg.device)
            acc = {k: log[step].get(k, float("nan")) for k in ACCURACY}
            rows.append({"step": step, **acc, **binding_at_checkpoint(model, world, cfg)})
        if not rows:
            raise ValueError(
                f"{model_dir} has no checkpoint with a logged evaluation; train with eval_every = checkpoint_every."
            )
        steps = [r["step"] for r in rows]
        crossings = {f"{k}>=0.9": crossing(steps, _series(rows, k), 0.9) for k in SERIES if k in rows[0]}
        crossings |= {f"heldout>={t}": crossing(steps, _series(rows, "heldout"), t) for t in (0.5, 0.9)}
        crossings |= {"train>=0.9": crossing(steps, _series(rows, "train"), 0.9)}
        record = {
            "config": asdict(cfg),
            "world": world.summary(),
            "rows": rows,
            "crossings": crossings,
            "lag_steps_train_to_heldout_0.9": _lag(crossings["train>=0.9"], crossings["heldout>=0.9"]),
            "wall_s": {"train_model": round(train_s, 1), "total": round(time.time() - t0, 1)},
        }
        (out / "grokking.json").write_text(strict_json(record))
        _report(out / "grokking.html", record)
        return record
    finally:
        torch.set_num_threads(previous)


def _trained_run(model_dir: Path) -> tuple[TwoHopWorld, dict[int, dict[str, Any]]]:
    """The world and the per-step evaluation log of a model folder written by `train_two_hop_model`."""
    for name in (WORLD_FILE, LOG_FILE):
        if not (model_dir / name).is_file():
            raise FileNotFoundError(
                f"model folder {model_dir} has no {name}; pass a folder written by `align-lens train-two-hop "
                "--format implicit` (or omit --model to train one)"
            )
    log = {r["step"]: r for r in map(json.loads, (model_dir / LOG_FILE).read_text().splitlines())}
    return TwoHopWorld.load(model_dir / WORLD_FILE), log


def _lag(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else b - a


def grokking_figure(record: dict[str, Any]):
    """Two panels on a shared step axis: model accuracy (top) and held-out binding (bottom), crossings marked."""
    from plotly.subplots import make_subplots

    rows = record["rows"]
    steps = [r["step"] for r in rows]
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, subplot_titles=("model accuracy (exact)", "held-out binding (top-1)")
    )
    for k in ACCURACY:
        fig.add_scatter(x=steps, y=_series(rows, k), name=f"{k} compositions", mode="lines+markers", row=1, col=1)
    for k in [k for k in SERIES if k in rows[0]]:
        fig.add_scatter(x=steps, y=_series(rows, k), name=k.replace("_", " "), mode="lines+markers", row=2, col=1)
    for label, step in record["crossings"].items():
        if step is not None and label != "train>=0.9":
            fig.add_vline(x=step, line_dash="dot", line_color="grey", annotation_text=label, annotation_font_size=9)
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(title_text="training step", row=2, col=1)
    fig.update_layout(title="Binding vs generalisation across checkpoints", height=650)
    return fig


def _report(path: Path, record: dict[str, Any]) -> None:
    from align_lens.viz.report import write_report

    cross = [{"event": k, "first step": v if v is not None else "never"} for k, v in record["crossings"].items()]
    write_report(
        path,
        "Grokking diagnostic (two-hop, implicit format)",
        [
            ("Accuracy and binding per checkpoint", grokking_figure(record)),
            ("Per checkpoint", record["rows"]),
            ("Crossings", cross),
            ("World", [record["world"]]),
        ],
    )
