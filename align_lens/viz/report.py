"""A self-contained HTML report: headline numbers, tables and plotly figures (plotly.js inlined, works offline)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}h2{margin-top:2em}.note{color:#666}"""


def _cell(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table_html(rows: Sequence[Mapping[str, Any]]) -> str:
    """An HTML table from a list of dicts sharing keys."""
    if not rows:
        return "<p class=note>(empty)</p>"
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join("<tr>" + "".join(f"<td>{_cell(r.get(k, ''))}</td>" for k in keys) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def write_report(
    path: str | Path,
    title: str,
    sections: Sequence[tuple[str, str | Sequence[Mapping[str, Any]] | Any]],
) -> Path:
    """Write `sections` — (heading, content) with content an HTML string, a list of row dicts (a table)
    or a plotly figure — to one HTML file that opens without a network."""
    parts, inlined = [], False
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        if hasattr(content, "to_html"):
            parts.append(content.to_html(full_html=False, include_plotlyjs="inline" if not inlined else False))
            inlined = True
        elif isinstance(content, str):
            parts.append(content)
        else:
            parts.append(table_html(list(content)))
    doc = (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>{''.join(parts)}</body></html>"
    )
    path = Path(path)
    path.write_text(doc, encoding="utf-8")
    return path
