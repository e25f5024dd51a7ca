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
        to_html = getattr(content, "to_html", None)  # a plotly figure
        if to_html is not None:
            parts.append(to_html(full_html=False, include_plotlyjs="inline" if not inlined else False))
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


def evaluation_sections(result: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """Report sections for one `evals.evaluate` result: summary, binding heatmap, swap curves, pair matrix at
    the best α, swap table and example generations (the swap parts only when swaps were run)."""
    from align_lens.evals.evaluate import headline
    from align_lens.interventions.swaps import swap_table
    from align_lens.viz import figures

    names = result["concepts"]
    sections: list[tuple[str, Any]] = [("Summary", [{"metric": k, "value": v} for k, v in headline(result).items()])]
    held = result["binding"]["heldout"] or result["binding"]["train"]
    split = "held-out" if result["binding"]["heldout"] else "training"
    sections.append((f"Binding on {split} prompts", figures.binding_heatmap(held["confusion"], names)))
    swap = result["swap"]
    if swap is not None:
        alpha = result["swap_best_alpha"]
        sections += [
            (f"Swap success by α ({swap['mode']} mode, α in {swap['unit']})", figures.swap_by_alpha(swap)),
            ("Swap success per pair at the best α (exact answer)", figures.swap_pair_matrix(swap, names, alpha=alpha)),
            ("Swap table", swap_table(swap)),
            ("Swap examples", swap["examples"]),
        ]
    return sections
