"""``python -m pytest_xfperf report merge A.json B.json ...``: one report of several runs
(shards of one matrix, machines of a fleet), machines side by side, one status line.

Checks before anything is written: every file is a report of this version's schema; no case
appears twice on one machine; the shards of one matrix split it the same way and are all there.
Exit status: 1 when any case failed, else 0 (2, from the CLI, for bad input).
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_xfperf.metrics import METRICS
from pytest_xfperf.report.json_report import REPORT_SCHEMA, read_report
from pytest_xfperf.result import Result


@dataclass
class Part:
    path: Path
    meta: dict[str, Any]
    results: list[Result]

    @property
    def machine(self) -> str:
        return str(self.meta.get("machine", {}).get("key", "unknown machine"))


def load(paths: Sequence[Path]) -> list[Part]:
    from pytest_xfperf.report.render import results_of

    parts = []
    for path in paths:
        data = read_report(path)
        schema = data.get("schema", 1)
        if schema != REPORT_SCHEMA:
            raise ValueError(
                f"{path}: report schema {schema}; this pytest-xfperf merges schema "
                f"{REPORT_SCHEMA} only. Write that report again with this version (pytest "
                "--xfperf --xfperf-report PATH), or merge with the version that wrote it")
        results, meta = results_of(data, path)
        parts.append(Part(path, meta, results))
    return parts


def check(parts: Sequence[Part]) -> None:
    """No case twice on one machine; shards of one matrix agree and are complete."""
    seen: dict[tuple[str, str], Path] = {}
    for part in parts:
        for result in part.results:
            key = (part.machine, result.case.id)
            if key in seen:
                raise ValueError(
                    f"{result.case.id} on {part.machine} is in both {seen[key]} and "
                    f"{part.path}: shards must not overlap (merge one run per machine, or "
                    "check that the shards were given distinct K of the same N)")
            seen[key] = part.path
    by_matrix: dict[str, list[Part]] = {}
    for part in parts:
        shard = part.meta.get("shard")
        if isinstance(shard, Mapping):
            by_matrix.setdefault(str(shard.get("matrix")), []).append(part)
    for shards in by_matrix.values():
        first = shards[0].meta["shard"]
        for part in shards[1:]:
            shard = part.meta["shard"]
            if (shard["partition"], shard["count"]) != (first["partition"], first["count"]):
                raise ValueError(
                    f"{shards[0].path} (shard {first['index']}/{first['count']}) and "
                    f"{part.path} (shard {shard['index']}/{shard['count']}) split the same "
                    "matrix differently: their cost tables differed. Every shard must read the "
                    "same baselines directory (and history), as a checkout of one commit does")
        indices = sorted(int(p.meta["shard"]["index"]) for p in shards)
        missing = sorted(set(range(1, int(first["count"]) + 1)) - set(indices))
        twice = sorted({i for i in indices if indices.count(i) > 1})
        if missing or twice:
            count = first["count"]
            named = ", ".join(f"{i}/{count}" for i in (missing or twice))
            problem = f"shard(s) {named} {'missing' if missing else 'given twice'}"
            raise ValueError(f"{problem} (have {', '.join(str(p.path) for p in shards)}): "
                             "merge every shard's report exactly once")


def headline_metric(result: Result) -> str:
    """The figure a side-by-side cell shows: the gated time of the case's kind."""
    values = result.metrics()
    for name in (result.timing_metric, "p50_ms", "throughput"):
        if name in values:
            return name
    return next(iter(values), "")


def cell(result: Result | None) -> str:
    if result is None:
        return "-"
    name = headline_metric(result)
    value = result.metrics().get(name)
    text = METRICS[name].render(value) if name in METRICS and value is not None else ""
    delta = result.gate.deltas.get(name) if result.gate else None
    if delta is not None:
        text += f" ({delta:+.1%})"
    verdict = result.verdict.value
    return f"{text} {f'**{verdict}**' if result.failed else verdict}".strip()


def status_line(parts: Sequence[Part]) -> tuple[str, bool]:
    results = [r for p in parts for r in p.results]
    failed = [r for r in results if r.failed]
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    machines = sorted({p.machine for p in parts})
    text = (f"{'FAILED' if failed else 'passed'}: {len(parts)} report(s), {len(machines)} "
            f"machine(s), {len(results)} case(s): "
            + ", ".join(f"{n} {v}" for v, n in sorted(counts.items())))
    return text, bool(failed)


def side_by_side(parts: Sequence[Part]) -> tuple[list[str], list[list[str]]]:
    machines = sorted({p.machine for p in parts})
    by_case: dict[str, dict[str, Result]] = {}
    for part in parts:
        for result in part.results:
            by_case.setdefault(result.case.id, {})[part.machine] = result
    rows = [[case_id, *(cell(by_case[case_id].get(m)) for m in machines)]
            for case_id in sorted(by_case)]
    return ["case", *machines], rows


def _per_machine_markdown(parts: Sequence[Part], machine: str) -> str:
    """That machine's report as ``report`` renders it, headings one level down, without the
    appendix the merged report shows once."""
    from pytest_xfperf.report import markdown
    from pytest_xfperf.report.tables import build_groups, recommendations

    results = [r for p in parts if p.machine == machine for r in p.results]
    meta = next(p.meta for p in parts if p.machine == machine)
    groups = build_groups(results, None)
    text = markdown.render(results, groups, recommendations(groups), meta, None, [])
    text = text.split("\n## What the numbers include")[0]
    text = text.replace("# pytest-xfperf report", f"# {machine}", 1)
    return re.sub(r"(?m)^#", "##", text)


def markdown_text(parts: Sequence[Part]) -> str:
    from pytest_xfperf.report.markdown import INCLUDES

    status, failed = status_line(parts)
    columns, rows = side_by_side(parts)
    out = ["# pytest-xfperf merged report", "", f"**{'❌' if failed else '✅'} {status}**", "",
           "## Reports", ""]
    out += [f"- `{p.path.name}`: {p.machine}" + (
        f", shard {p.meta['shard']['index']}/{p.meta['shard']['count']}"
        if isinstance(p.meta.get("shard"), Mapping) else "")
        + f", {len(p.results)} case(s)" for p in parts]
    out += ["", "## Machines side by side", "",
            "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    out.append("")
    for machine in sorted({p.machine for p in parts}):
        out.append(_per_machine_markdown(parts, machine))
    out += ["## What the numbers include", ""] + [f"- {line}" for line in INCLUDES]
    return "\n".join(out) + "\n"


def html_text(parts: Sequence[Part]) -> str:
    from pytest_xfperf.report.html import STYLE, render
    from pytest_xfperf.report.tables import build_groups, recommendations

    status, failed = status_line(parts)
    columns, rows = side_by_side(parts)
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>pytest-xfperf merged report</title>", f"<style>{STYLE}</style></head><body>",
           "<h1>pytest-xfperf merged report</h1>",
           f'<p><strong class="{"status-failed" if failed else "status-ok"}">'
           f"{html.escape(status)}</strong></p>", "<h2>Machines side by side</h2>",
           "<table><thead><tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in columns)
           + "</tr></thead><tbody>"]
    for row in rows:
        out.append("<tr>" + "".join(f"<td>{html.escape(c.replace('**', ''))}</td>"
                                    for c in row) + "</tr>")
    out.append("</tbody></table>")
    for machine in sorted({p.machine for p in parts}):
        results = [r for p in parts if p.machine == machine for r in p.results]
        meta = next(p.meta for p in parts if p.machine == machine)
        groups = build_groups(results, None)
        page = render(results, groups, recommendations(groups), meta, None, [], {})
        # The body between the page's title and its appendix, headings one level down.
        body = page.split("<h1>pytest-xfperf report</h1>", 1)[1].split(
            "<h2>What the numbers include</h2>", 1)[0]
        body = re.sub(r"<(/?)h2>", r"<\1h3>", body)
        out += [f"<h2>{html.escape(machine)}</h2>", body]
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def merge(paths: Sequence[Path], markdown_path: Path | None, html_path: Path | None,
          out: Any) -> int:
    from pytest_xfperf.fileio import atomic_write_bytes

    if len(paths) < 1:
        raise ValueError("report merge needs at least one report")
    parts = load(paths)
    check(parts)
    status, failed = status_line(parts)
    if markdown_path is not None:
        atomic_write_bytes(markdown_path, markdown_text(parts).encode("utf-8"))
        out.write(f"Markdown report written to {markdown_path}\n")
    if html_path is not None:
        atomic_write_bytes(html_path, html_text(parts).encode("utf-8"))
        out.write(f"HTML report written to {html_path}\n")
    out.write(f"xfperf merged: {status}\n")
    return 1 if failed else 0
