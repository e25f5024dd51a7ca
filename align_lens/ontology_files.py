"""Reading ontology files (.jsonl, .csv, .json) into records: every error names the file and, where there is one,
the line. `Ontology.load` builds the ontology from the records.

Files are UTF-8; a leading byte-order mark (Excel's "UTF-8 CSV") is accepted. Anything else that cannot be
used raises OntologyError, never a raw JSON, CSV or Unicode error.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from align_lens.errors import OntologyError

SUFFIXES = (".jsonl", ".csv", ".json")
T = TypeVar("T")


def read_text(path: str | Path) -> str:
    """The file's text (UTF-8, optional BOM), or an OntologyError naming the file and the bad byte's line."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise OntologyError(f"cannot read ontology file {path}: {e.strerror or e}") from e
    if data[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in data:
        raise OntologyError(f"{path} is UTF-16 (or holds NUL bytes), not UTF-8 text; re-save it as UTF-8.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise OntologyError(
            f"{path}, line {line}: byte {data[e.start]:#04x} is not UTF-8 (the file looks like latin-1 or "
            "another legacy encoding); re-save it as UTF-8."
        ) from None


def naming_file(path: Path, build: Callable[[], T]) -> T:
    """Run `build()`; prefix any OntologyError that does not name the file with the file's path."""
    try:
        return build()
    except OntologyError as e:
        if str(path) in str(e):
            raise
        raise OntologyError(f"{path}: {e}") from None


def jsonl_records(path: Path) -> tuple[list[Any], list[str]]:
    """(one record per non-empty line, "FILE, line N" for each). The lines are parsed as one JSON array (one C-level
    parse); a file that does not parse that way is read line by line to name the bad line."""
    numbered = [(n, line) for n, line in enumerate(read_text(path).split("\n"), start=1) if line.strip()]
    sources = [f"{path}, line {n}" for n, _ in numbered]
    try:
        records = json.loads("[" + ",".join(line for _, line in numbered) + "]")
    except (json.JSONDecodeError, RecursionError):
        records = None
    if records and len(records) == len(numbered) and all(isinstance(r, dict) for r in records):
        return records, sources
    records, sources = [], []
    for n, line in numbered:  # numbered as editors number lines
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, RecursionError) as e:
            msg = f"{e.msg} at column {e.colno}" if isinstance(e, json.JSONDecodeError) else "nested too deeply"
            raise OntologyError(
                f"{path}, line {n}: not valid JSON ({msg}); each line must be one JSON object."
            ) from None
        sources.append(f"{path}, line {n}")
    if not records:
        raise OntologyError(f"{path} holds no records; write one JSON object per line.")
    return records, sources


def csv_records(path: Path) -> tuple[list[Any], list[str]]:
    """(one record per non-empty row after the header, "FILE, line N" for each)."""
    text = read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        rows = [(reader.line_num, row) for row in reader]
    except csv.Error as e:
        raise OntologyError(f"{path}, line {reader.line_num}: not valid CSV ({e}).") from None
    rows = [(n, r) for n, r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise OntologyError(f"{path} is empty; it needs a header row with at least 'prompt' and 'concept'.")
    (_, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    if "prompt" not in header or "concept" not in header:
        raise OntologyError(f"{path}, line 1: the header {header} needs 'prompt' and 'concept' columns.")
    records, sources = [], []
    for n, row in body:
        if len(row) != len(header):
            which = "fewer" if len(row) < len(header) else "more"
            raise OntologyError(
                f"{path}, line {n}: {len(row)} values, {which} than the header's {len(header)} columns {header}; "
                "quote values that contain commas."
            )
        records.append(dict(zip(header, row)))
        sources.append(f"{path}, line {n}")
    return records, sources


def json_document(source: str | Path) -> tuple[list[Any], list[Any], list[str], str | Path]:
    """(examples, concepts, a name for each example, where) of a JSON string or a file written by
    `Ontology.to_json`: {"concepts": [...], "examples": [...]}; `where` is the path, or "the JSON text"."""
    is_text = isinstance(source, str) and source.lstrip().startswith("{")
    where = "the JSON text" if is_text else Path(source)
    try:
        d = json.loads(str(source) if is_text else read_text(Path(source)))
    except (json.JSONDecodeError, RecursionError) as e:
        detail = f"line {e.lineno} column {e.colno}: {e.msg}" if isinstance(e, json.JSONDecodeError) else "too deep"
        raise OntologyError(f"{where} is not valid JSON ({detail}).") from None
    if not isinstance(d, dict) or not isinstance(d.get("concepts"), list):
        raise OntologyError(
            f"{where} must be an object with a 'concepts' list (and an 'examples' list), as Ontology.to_json "
            "writes; for one labelled prompt per line use a .jsonl file."
        )
    examples = d.get("examples", [])
    if not isinstance(examples, list):
        raise OntologyError(f"{where}: 'examples' must be a list, got {type(examples).__name__}.")
    extra = set(d) - {"concepts", "examples"}
    if extra:
        raise OntologyError(f"{where} has unknown key(s) {sorted(extra)}; allowed: concepts, examples.")
    sources = [f"{where}, example {i}" for i in range(len(examples))]
    return examples, d["concepts"], sources, where
