"""A single-file HTML report: the Markdown report's tables and the plots, embedded."""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_xfperf.report.markdown import INCLUDES, SERVING_COLUMNS, SINGLE_COLUMNS, _cells
from pytest_xfperf.report.tables import (
    GENERATION,
    GENERATION_COLUMNS,
    Group,
    Recommendation,
    drop_empty_columns,
    generation_cells,
    header_facts,
    summary_counts,
)
from pytest_xfperf.result import Result

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1200px; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 14px; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child, td:last-child { text-align: left; }
th { background: #f3f5f7; }
tr.failed td { background: #fdecea; }
.status-ok { color: #1e8449; } .status-failed { color: #c0392b; }
img { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
code { background: #f3f5f7; padding: 0 3px; }
"""


def _table(columns: Sequence[str], rows: Sequence[tuple[Sequence[str], bool]]) -> str:
    columns, cells_only = drop_empty_columns(columns, [cells for cells, _ in rows])
    rows = [(cells, failed) for cells, (_, failed) in zip(cells_only, rows, strict=True)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for cells, failed in rows:
        tds = "".join(f"<td>{html.escape(c.replace('**', ''))}</td>" for c in cells)
        row_class = ' class="failed"' if failed else ""
        body.append(f"<tr{row_class}>{tds}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def _image(title: str, png: bytes) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'


def render(results: Sequence[Result], groups: Sequence[Group],
           picks: Mapping[str, Sequence[Recommendation]], meta: Mapping[str, Any],
           price: tuple[str, float] | None, notes: Sequence[str],
           charts: Mapping[str, tuple[str, bytes]], plots_note: str = "") -> str:
    failed = [r for r in results if r.failed]
    counts = summary_counts(results)
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             "<title>pytest-xfperf report</title>", f"<style>{STYLE}</style></head><body>",
             "<h1>pytest-xfperf report</h1>"]
    status_class = "status-failed" if failed else "status-ok"
    status = "regressions found" if failed else "no regressions"
    parts.append(f'<p><strong class="{status_class}">{status}</strong> — {len(results)} '
                 f"case(s): {html.escape(', '.join(f'{n} {v}' for v, n in counts.items()))}</p>")
    facts = list(header_facts(meta))
    if price is not None:
        facts.append(f"price: {price[1]:g} $/hour for {price[0]}")
    parts.append("<ul>" + "".join(f"<li>{html.escape(f.replace('`', ''))}</li>" for f in facts)
                 + "</ul>")
    if failed:
        parts.append("<h2>Failures</h2><ul>")
        for r in failed:
            lines = r.failure_message().splitlines()
            detail = "".join(f"<li>{html.escape(line.strip())}</li>" for line in lines[1:])
            parts.append(f"<li><code>{html.escape(r.case.id)}</code> <strong>"
                         f"{html.escape(r.verdict.value)}</strong><ul>{detail}</ul></li>")
        parts.append("</ul>")
    for group in groups:
        serving = group.scenario != "single-stream"
        parts.append(f"<h2>{html.escape(group.title)}</h2>")
        if group.scenario == GENERATION:
            parts.append(_table(GENERATION_COLUMNS, [(generation_cells(row), row.failed)
                                                     for row in group.rows]))
        else:
            parts.append(_table(SERVING_COLUMNS if serving else SINGLE_COLUMNS,
                                [(_cells(row, serving), row.failed) for row in group.rows]))
        if group.title in charts:
            parts.append(_image(group.title, charts[group.title][1]))
    others = [t for t in charts if t not in {g.title for g in groups}]
    if others:
        parts.append("<h2>Charts</h2>")
        parts += [_image(t, charts[t][1]) for t in others]
    if plots_note:
        parts.append(f"<p><em>{html.escape(plots_note)}</em></p>")
    if picks:
        parts.append("<h2>Recommendations (from this run's numbers)</h2><ul>")
        for model, items in picks.items():
            for item in items:
                parts.append(f"<li><strong>{html.escape(model)}, {html.escape(item.goal)}:"
                             f"</strong> <code>{html.escape(item.row.label)}</code> "
                             f"({item.row.result.case.shape}) — {html.escape(item.figures)}</li>")
        parts.append("</ul>")
    parts.append("<h2>What the numbers include</h2><ul>"
                 + "".join(f"<li>{html.escape(line)}</li>" for line in INCLUDES) + "</ul>")
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(
            f"<li>{html.escape(n.removeprefix('xfperf: '))}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
