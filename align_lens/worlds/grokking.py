"""The grokking diagnostic: how readers and edits of the bridge entity track a model's generalisation.

An implicit-format two-hop model (prompt `Q: e1 r1 r2 A:`, answer e3: the bridge e2 is never written) is trained
with a checkpoint every `checkpoint_every` steps, once per seed. Its train / held-out / OOD composition accuracy is
logged every `eval_every` steps (the plateau is measured on that log), and at each checkpoint
`grokking_checkpoint.diagnose` fits every reader (aligned slots, a probe, DiffMean, the Stage-1 SAE's best latent,
aligned slots on shuffled labels) on TRAINING questions, scores them on HELD-OUT compositions, and swaps the bridge
entity to test whether the answer follows it. Unlike the official analysis (a separate SAE per epoch scored on its
own training items, no accuracy per epoch), every number is out-of-sample and lined up against the model's own
generalisation, per seed, with the spread over seeds.

Each seed lives in `out_dir/seed_<s>/` (its model, unless `model_dir` is given, and `rows.jsonl`, one line per
analysed checkpoint): an interrupted run resumes, and seeds run in separate processes into the same `out_dir` are
picked up by a later run with all of them. With `threads=1` every number is bit-reproducible on one machine.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from align_lens.files import strict_json
from align_lens.training.checkpoint import fingerprint
from align_lens.training.config import Stage1Config
from align_lens.worlds.grokking_checkpoint import READERS, SERIES, SWAP_METHODS, diagnose, key, swap_key
from align_lens.worlds.two_hop import TwoHopWorld, make_two_hop_world
from align_lens.worlds.two_hop_model import LOG_FILE, WORLD_FILE, checkpoint_steps, load_checkpoint, train_two_hop_model

ACCURACY = ("train", "heldout", "ood")
# `align-lens grokking --quick`: one seed, 4,000 steps: the fit and the plateau's start (docs/two_hop.md). At the
# normal initialisation and wd 0.1 the fit comes at 1,500 steps, so 4,000 steps show 2,500 of the plateau (the
# defaults' held-out rise starts at 7,000-10,250 steps: beyond 10 minutes).
QUICK: dict[str, Any] = {"seeds": (0,), "steps": 4000, "checkpoint_every": 500, "init_scale": 1.0, "weight_decay": 0.1}
ROWS_FILE = "rows.jsonl"
STAMP_FILE = "diagnostic.json"


@dataclass
class GrokkingConfig:
    """Settings of `run_grokking`. The defaults are the measured plateau recipe (docs/two_hop.md)."""

    out_dir: str = "runs/grokking"
    model_dir: str | None = None  # an implicit model with checkpoints (one seed only); None: train per seed
    seeds: tuple[int, ...] = (0, 1, 2)
    steps: int = 30000
    checkpoint_every: int = 2000  # steps between diagnosed checkpoints
    eval_every: int | None = 250  # steps between accuracy evaluations in the training log (None: checkpoint_every)
    lr: float = 2e-3
    weight_decay: float = 0.2  # 0.1: a longer plateau, held-out < 0.9 at 30,000; 0.2: ≥ 0.9 in 2 seeds of 3
    init_scale: float = 2.0  # weight matrices × this at init (Omnigrok's lever: × 2 lengthens the plateau)
    d_model: int = 64
    n_entities: int = 50
    n_relations: int = 10
    world_seed: int = 0
    official: bool = False  # the official layered 20/20/20 world (4,000 / 4,000 split; world size fields unused)
    world_heldout: int = 500  # held-out compositions of the world
    world_train: int | None = 2000  # training compositions (None: all the others); φ = 2,000 / 500 atomic facts = 4
    phrasing: str = "compact"  # "Q: e1 r1 r2 A:" (about half the training cost of the natural frames)
    hook_name: str = "blocks.2.hook_resid_post"
    n_train: int = 2000  # training questions for the readers
    n_heldout: int = 1000  # held-out compositions scored
    stage1: Stage1Config = field(default_factory=lambda: Stage1Config(d_sae=256, k=8, steps=300, batch_size=256))
    align_epochs: int = 8
    swap_items: int = 100  # held-out compositions per half (validation, test) of the bridge swap
    alphas: tuple[float, ...] = (0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, 8.0)
    device: str = "cpu"
    threads: int = 1
    progress: bool = False


def crossing(steps: list[int], values: list[float], threshold: float) -> int | None:
    """First step whose value is ≥ `threshold` (None if never)."""
    return next((s for s, v in zip(steps, values) if v >= threshold), None)


def plateau(steps: list[int], train: list[float], heldout: list[float]) -> dict[str, Any]:
    """fit = first step with training compositions ≥ 0.99; rise = first step with held-out > 0.2; grok = first
    step with held-out ≥ 0.9; plateau = rise − fit (up to the last step if held-out never rises), ratio = plateau /
    fit (the goal: ≥ 2)."""
    fit, grok = crossing(steps, train, 0.99), crossing(steps, heldout, 0.9)
    rise = next((s for s, v in zip(steps, heldout) if v > 0.2), None)
    if fit is None:
        return {"fit": None, "rise": rise, "grok": grok, "plateau": None, "ratio": None}
    length = (rise if rise is not None else steps[-1]) - fit
    return {"fit": fit, "rise": rise, "grok": grok, "plateau": length, "ratio": length / fit if fit else None}


def world_of(cfg: GrokkingConfig) -> TwoHopWorld:
    kw = {"seed": cfg.world_seed, "n_train": cfg.world_train, "phrasing": cfg.phrasing}
    if cfg.official:
        return make_two_hop_world(official=True, **kw)
    return make_two_hop_world(n_entities=cfg.n_entities, n_relations=cfg.n_relations, n_heldout=cfg.world_heldout, **kw)


def run_seed(cfg: GrokkingConfig, seed: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train (or load) one seed's model and diagnose each analysed checkpoint not yet in its `rows.jsonl`; returns
    the diagnosed rows and the model's accuracy log (every evaluation its training logged)."""
    every = cfg.eval_every or cfg.checkpoint_every
    if cfg.checkpoint_every % every:
        raise ValueError(
            f"checkpoint_every ({cfg.checkpoint_every}) must be a multiple of eval_every ({every}): every diagnosed "
            "checkpoint needs its logged accuracy"
        )
    folder = Path(cfg.out_dir) / f"seed_{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    model_dir = Path(cfg.model_dir) if cfg.model_dir else folder / "model"
    if cfg.model_dir is None:
        train_two_hop_model(
            world_of(cfg),
            model_dir,
            "implicit",
            d_model=cfg.d_model,
            d_mlp=4 * cfg.d_model,
            steps=cfg.steps,
            lr=cfg.lr,
            weight_decay=cfg.weight_decay,
            init_scale=cfg.init_scale,
            seed=seed,
            device=cfg.device,
            threads=cfg.threads,
            checkpoint_every=cfg.checkpoint_every,
            eval_every=every,
            progress=cfg.progress,
        )
    world, log = _trained_run(model_dir)
    # what a diagnosed row depends on; a checkpoint's weights do not depend on `steps` (constant lr)
    stamp = fingerprint(asdict(cfg), exclude={"out_dir", "seeds", "progress", "eval_every", "steps"}, seed=seed)
    rows = _cached_rows(folder, stamp)
    done = {r["step"] for r in rows}
    saved = checkpoint_steps(model_dir)
    todo = [s for s in saved if s in log and (s % cfg.checkpoint_every == 0 or s == saved[-1])]
    if not todo:
        raise ValueError(
            f"{model_dir} has no checkpoint with a logged evaluation; train with eval_every = checkpoint_every."
        )
    for step in todo:
        if step in done:
            continue
        model = load_checkpoint(model_dir, step, cfg.device)
        row = {"step": step, **{k: log[step].get(k, float("nan")) for k in ACCURACY}}
        rows.append(row | diagnose(model, world, cfg, seed))
        with (folder / ROWS_FILE).open("a") as f:
            f.write(strict_json(rows[-1], indent=None) + "\n")
    accuracy = [{"step": st} | {k: r.get(k, float("nan")) for k in ACCURACY} for st, r in sorted(log.items())]
    return sorted((r for r in rows if r["step"] in todo), key=lambda r: r["step"]), accuracy


def _cached_rows(folder: Path, stamp: dict) -> list[dict[str, Any]]:
    """Rows already diagnosed under the same settings; other settings' rows are dropped."""
    rows_path, stamp_path = folder / ROWS_FILE, folder / STAMP_FILE
    if stamp_path.exists() and json.loads(stamp_path.read_text()) == stamp and rows_path.exists():
        return [json.loads(line) for line in rows_path.read_text().splitlines() if line.strip()]
    rows_path.unlink(missing_ok=True)
    stamp_path.write_text(json.dumps(stamp))
    return []


def bands(per_seed: dict[int, list[dict[str, Any]]]) -> dict[str, dict[str, list[float]]]:
    """Per numeric key: the steps all seeds analysed, and the mean, min and max over seeds at each."""
    steps = sorted(set.intersection(*({r["step"] for r in rows} for rows in per_seed.values())))
    by_step = {s: [next(r for r in rows if r["step"] == s) for rows in per_seed.values()] for s in steps}
    keys = [k for k, v in next(iter(per_seed.values()))[0].items() if k != "step" and isinstance(v, float)]
    out = {}
    for k in keys:
        vals = torch.tensor([[row[k] for row in by_step[s]] for s in steps], dtype=torch.float64)
        out[k] = {"step": steps, "mean": vals.mean(1).tolist(), "min": vals.min(1).values.tolist()}
        out[k]["max"] = vals.max(1).values.tolist()
    return out


def crossings(rows: list[dict[str, Any]], accuracy: list[dict[str, Any]]) -> dict[str, int | None]:
    """First steps of: train ≥ 0.99, held-out ≥ 0.5 / 0.9 (in the `accuracy` log), each reader's binding ≥ 0.9
    and each swap ≥ 0.5 (in the diagnosed `rows`)."""
    at = [r["step"] for r in accuracy]
    out = {"train>=0.99": crossing(at, [r["train"] for r in accuracy], 0.99)}
    out |= {f"heldout>={t}": crossing(at, [r["heldout"] for r in accuracy], t) for t in (0.5, 0.9)}
    steps = [r["step"] for r in rows]
    for k in [k for k in rows[0] if "." in k and not k.endswith(".alpha") or k in SERIES]:
        t = 0.5 if k.startswith("swap.") else 0.9
        out[f"{k}>={t}"] = crossing(steps, [r[k] for r in rows], t)
    return out


def run_grokking(cfg: GrokkingConfig) -> dict[str, Any]:
    """Every seed's rows (`run_seed`), their spread, crossings and plateau per seed; writes grokking.json and
    grokking.html into `cfg.out_dir` and returns the JSON record."""
    if not cfg.seeds:
        raise ValueError("give at least one seed")
    if cfg.model_dir is not None and len(cfg.seeds) > 1:
        raise ValueError("--model is one trained model: give one seed, or omit --model to train one per seed")
    previous = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    t0 = time.time()
    try:
        runs = {s: run_seed(cfg, s) for s in cfg.seeds}
        per_seed = {s: rows for s, (rows, _) in runs.items()}
        world, _ = _trained_run(
            Path(cfg.model_dir) if cfg.model_dir else Path(cfg.out_dir) / f"seed_{next(iter(per_seed))}" / "model"
        )
        record = {
            "config": asdict(cfg),
            "world": world.summary(),
            "seeds": {
                s: {
                    "rows": rows,
                    "accuracy": accuracy,
                    "crossings": crossings(rows, accuracy),
                    "plateau": plateau(*([r[k] for r in accuracy] for k in ("step", "train", "heldout"))),
                }
                for s, (rows, accuracy) in runs.items()
            },
            "bands": bands(per_seed),
            "accuracy_bands": bands({s: accuracy for s, (_, accuracy) in runs.items()}),
            "wall_s": round(time.time() - t0, 1),
        }
        out = Path(cfg.out_dir)
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


def grokking_figure(record: dict[str, Any]):
    """Four panels on a shared step axis, each line the mean over seeds with a min–max band: model accuracy,
    aligned-slot binding per series (dotted: the shuffled-label floor), every reader of the bridge at the r1 token
    (at the answer position for the natural phrasing), and the swap-follows-bridge rate of each edit."""
    from plotly.subplots import make_subplots

    b = record["bands"] | record["accuracy_bands"]  # accuracy at every logged evaluation, not only checkpoints
    bridge = "bridge_entity_at_r1" if "bridge_entity_at_r1" in b else "bridge_entity"
    titles = (
        "model accuracy (exact)",
        "aligned-slot binding, held-out (dotted: shuffled labels)",
        f"readers of the bridge ({bridge.replace('_', ' ')}), held-out binding",
        "swap follows the bridge (exact, α chosen on validation)",
    )
    fig = make_subplots(rows=4, cols=1, shared_xaxes=True, subplot_titles=titles, vertical_spacing=0.06)
    panels: list[tuple[int, str, str, str]] = [(1, k, f"{k} compositions", "solid") for k in ACCURACY]
    for s in [s for s in SERIES if s in b]:
        panels += [
            (2, s, s.replace("_", " "), "solid"),
            (2, key(s, "shuffled"), f"{s.replace('_', ' ')} shuffled", "dot"),
        ]
    panels += [(3, key(bridge, r), r.replace("_", " "), "dot" if r == "shuffled" else "solid") for r in READERS]
    for s in [s for s in SERIES if s.startswith("bridge") and s in b]:
        panels += [
            (4, swap_key(s, m), f"swap {m} @ {'r1' if s.endswith('r1') else 'answer'}", "solid") for m in SWAP_METHODS
        ]
    for i, (row, k, name, dash) in enumerate(panels):
        if k not in b:
            continue
        x, band = b[k]["step"], b[k]
        color = _COLORS[i % len(_COLORS)]
        fig.add_scatter(
            x=x + x[::-1],
            y=band["max"] + band["min"][::-1],
            fill="toself",
            line_width=0,
            fillcolor=color,
            opacity=0.15,
            hoverinfo="skip",
            showlegend=False,
            row=row,
            col=1,
        )
        fig.add_scatter(
            x=x, y=band["mean"], name=name, mode="lines+markers", line={"color": color, "dash": dash}, row=row, col=1
        )
    fig.update_yaxes(range=[0, 1.05])
    fig.update_xaxes(title_text="training step", row=4, col=1)
    n = len(record["seeds"])
    fig.update_layout(
        title=f"Binding and causal use of the bridge vs generalisation ({n} seed{'s' * (n > 1)}, min–max bands)",
        height=1300,
    )
    return fig


_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def _report(path: Path, record: dict[str, Any]) -> None:
    from align_lens.viz.report import write_report

    b = record["bands"]
    table = [
        {"step": st} | {k: round(v["mean"][i], 3) for k, v in b.items() if not k.endswith(".alpha")}
        for i, st in enumerate(next(iter(b.values()))["step"])
    ]
    per_seed = [{"seed": s} | r["plateau"] for s, r in record["seeds"].items()]
    cross = [
        {"event": k} | {f"seed {s}": r["crossings"][k] for s, r in record["seeds"].items()}
        for k in next(iter(record["seeds"].values()))["crossings"]
    ]
    write_report(
        path,
        "Grokking diagnostic (two-hop, implicit format)",
        [
            ("Accuracy, binding and swaps per checkpoint", grokking_figure(record)),
            ("Plateau per seed (fit: train ≥ 0.99; rise: held-out > 0.2; grok: held-out ≥ 0.9)", per_seed),
            ("Crossings per seed (first step; None: never)", cross),
            ("Mean over seeds per checkpoint", table),
            ("World", [record["world"]]),
        ],
    )
