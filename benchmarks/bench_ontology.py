"""`Ontology` at scale: 20,000 concepts and 1,000,000 examples, each step timed.

Usage: python benchmarks/bench_ontology.py [--concepts 20000] [--examples 1000000]

Writes a .jsonl file (prompt, concept, answer, split: 90 % train) to a temporary folder, then times, in wall-clock
and CPU seconds (`time.process_time`: what the step itself used, on a shared machine): `Ontology.from_jsonl`
(reading, record checks, the one-prompt-one-concept-one-split check, every label known, every concept trained),
`fingerprint`, `select("train")`, `labels("train")`, `prompts("train")`, `counts`,
`index` of every concept name, `check_names` on the reversed names, and `to_json`. The issue's bound: ≤ 10 s each.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from align_lens import Ontology


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--concepts", type=int, default=20000)
    p.add_argument("--examples", type=int, default=1000000)
    a = p.parse_args()
    names = [f"concept {i}" for i in range(a.concepts)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ontology.jsonl"
        with path.open("w") as f:
            for i in range(a.examples):
                row = {"prompt": f"prompt number {i}", "concept": names[i % a.concepts], "answer": f"answer {i % 97}"}
                f.write(json.dumps(row | ({"split": "heldout"} if i // a.concepts % 10 == 9 else {})) + "\n")
        print(f"{a.concepts:,} concepts, {a.examples:,} examples ({path.stat().st_size / 2**20:.0f} MiB of jsonl)")
        start, cpu = time.perf_counter(), time.process_time()
        onto = Ontology.from_jsonl(path)
        times = {"from_jsonl (read + validate)": (time.perf_counter() - start, time.process_time() - cpu)}
        steps = {
            "fingerprint": onto.fingerprint,
            'select("train")': lambda: onto.select("train"),
            'labels("train")': lambda: onto.labels("train"),
            'prompts("train")': lambda: onto.prompts("train"),
            "counts": onto.counts,
            "index (every name)": lambda: [onto.index(n) for n in names],
            "check_names (reversed)": lambda: onto.check_names(names[::-1]),
            "to_json": lambda: onto.to_json(Path(tmp) / "ontology.json"),
        }
        for what, fn in steps.items():
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            times[what] = (time.perf_counter() - start, time.process_time() - cpu)
    print(f"{'step':<30} {'wall s':>7} {'CPU s':>7}")
    for what, (wall, used) in times.items():
        print(f"{what:<30} {wall:>7.2f} {used:>7.2f}")


if __name__ == "__main__":
    main()
