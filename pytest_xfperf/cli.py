"""Baselines and reports without running the suite.

    python -m pytest_xfperf baselines show FILE [--case GLOB]
    python -m pytest_xfperf baselines diff OLD NEW [--case GLOB]
    python -m pytest_xfperf baselines prune FILE (--case GLOB | --older-than DAYS |
                                                  --not-in REPORT.json)... [--dry-run]
    python -m pytest_xfperf report REPORT.json [--markdown PATH] [--html PATH] [--plots DIR]
    python -m pytest_xfperf report merge A.json B.json ... [--markdown PATH] [--html PATH]
    python -m pytest_xfperf history import REPORT.json ... [--history DB]
    python -m pytest_xfperf history show CASE_GLOB [--machine KEY] [--metric M] [--plot PNG]
    python -m pytest_xfperf history spreads --baseline FILE [--cases GLOB]

Exit status: 0 done, 2 bad input (a message names the file and the problem); `report merge`
exits 1 when a merged case failed. Nothing here imports an ML library.
"""

from __future__ import annotations

import argparse
import datetime as dt
import fnmatch
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_xfperf.baselines import pooling, store
from pytest_xfperf.baselines.machine import unrecorded
from pytest_xfperf.metrics import METRICS

# Columns of `show`/`diff`: metric -> (header, format), from the metric registry.
COLUMNS = {m.name: (m.name, "{:" + m.format + "}") for m in METRICS.values()}


class CliError(Exception):
    pass


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CliError(f"{path}: no such baseline file")
    try:
        return store.load(path)
    except store.BaselineError as exc:
        raise CliError(str(exc)) from None


def _select(cases: dict[str, Any], patterns: Sequence[str] | None) -> dict[str, Any]:
    if not patterns:
        return cases
    return {k: v for k, v in cases.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def _table(rows: list[list[str]], out: Any) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                            for i, (c, w) in enumerate(zip(row, widths, strict=True))) + "\n")


def show(path: Path, patterns: Sequence[str] | None, out: Any) -> int:
    document = _load(path)
    cases = _select(document["cases"], patterns)
    machine = document.get("machine", {})
    older = document.get("migrated_from")
    schema = (f"schema {older}, read as {document['schema']} (the file is unchanged; its "
              f"latency is not gated until recorded again)" if older
              else f"schema {document['schema']}")
    out.write(f"{path}: {schema}, {len(document['cases'])} case(s)"
              f"{'' if not patterns else f', {len(cases)} shown'}\n")
    if machine:
        out.write("machine: " + ", ".join(f"{k}={v}" for k, v in machine.items()
                                          if isinstance(v, (str, int, float))) + "\n")
    missing = unrecorded(machine)
    if missing:
        # The gate treats a fingerprint that lacks fields as another machine's, so such a
        # file gates no run anywhere; saying so here spares a reader from trusting it.
        out.write(f"machine fingerprint lacks {', '.join(missing)}: this file gates no "
                  f"machine; record it again on its machine (--xfperf-update-baselines)\n")
    if not cases:
        return 0
    used = [m for m in COLUMNS if any(m in e["metrics"] for e in cases.values())]
    # "record": blocks of the gate's block record (what a later run is compared with); "-"
    # for entries of older versions, whose latency is not gated until recorded again.
    rows = [["case", *(COLUMNS[m][0] for m in used), "samples", "noise", "record", "recorded"]]
    for case_id, entry in cases.items():
        metrics = entry["metrics"]
        noise = entry.get("noise", {}).get("robust_cv")
        rows.append([case_id, *(COLUMNS[m][1].format(metrics[m]) if m in metrics else "-"
                                for m in used),
                     str(len(entry.get("samples_ms", []))),
                     f"{noise:.1%}" if isinstance(noise, (int, float)) and noise else "-",
                     _record_size(entry.get("timing")),
                     str(entry.get("recorded", "-"))[:10]])
    _table(rows, out)
    return 0


def _record_size(record: Any) -> str:
    """How much a block record holds: its blocks, and the processes a pooled one joins."""
    if not isinstance(record, dict):
        return "-"
    blocks = f"{len(record['case_ms'])} blocks"
    processes = pooling.processes_of(record)
    return blocks if processes == 1 else f"{blocks} of {processes} processes"


def diff(old_path: Path, new_path: Path, patterns: Sequence[str] | None, out: Any) -> int:
    old = _select(_load(old_path)["cases"], patterns)
    new = _select(_load(new_path)["cases"], patterns)
    out.write(f"{old_path} -> {new_path}\n")
    common = sorted(set(old) & set(new))
    if common:
        used = [m for m in COLUMNS if any(m in old[c]["metrics"] and m in new[c]["metrics"]
                                          for c in common)]
        rows = [["case", *(COLUMNS[m][0] for m in used), "versions changed"]]
        for case_id in common:
            a, b = old[case_id]["metrics"], new[case_id]["metrics"]
            cells = []
            for metric in used:
                if metric not in a or metric not in b:
                    cells.append("-")
                elif metric in ("cosine", "retrieval"):
                    cells.append(f"{b[metric] - a[metric]:+.5f}")
                elif a[metric] > 0:
                    cells.append(f"{b[metric] / a[metric] - 1:+.1%}")
                else:
                    cells.append("-")
            va, vb = old[case_id].get("versions", {}), new[case_id].get("versions", {})
            changed = [f"{k} {va.get(k, '-')}->{vb.get(k, '-')}" for k in sorted(set(va) | set(vb))
                       if va.get(k) != vb.get(k)]
            rows.append([case_id, *cells, ", ".join(changed) or "-"])
        _table(rows, out)
        out.write("changes are new relative to old (latency/memory: + is slower/larger; "
                  "throughput: + is faster; cosine/retrieval: absolute)\n")
    for label, only in (("only in " + str(old_path), sorted(set(old) - set(new))),
                        ("only in " + str(new_path), sorted(set(new) - set(old)))):
        if only:
            out.write(f"{label}: {', '.join(only)}\n")
    return 0


def prune(path: Path, patterns: Sequence[str] | None, older_than: float | None,
          not_in: Path | None, dry_run: bool, out: Any) -> int:
    if not patterns and older_than is None and not_in is None:
        raise CliError("prune needs a criterion: --case GLOB, --older-than DAYS or "
                       "--not-in REPORT.json")
    cases = _load(path)["cases"]
    doomed = set(_select(cases, patterns)) if patterns else set(cases)
    if older_than is not None:
        cutoff = dt.datetime.now(dt.timezone.utc) - dt.timedelta(days=older_than)
        doomed &= {k for k, v in cases.items() if _recorded(v) < cutoff}
    if not_in is not None:
        doomed &= set(cases) - _report_ids(not_in)
    if dry_run:
        out.write(f"would remove {len(doomed)} of {len(cases)} case(s) from {path}"
                  + "".join(f"\n  {c}" for c in sorted(doomed)) + "\n")
        return 0
    removed = store.remove_cases(path, doomed) if doomed else []
    out.write(f"removed {len(removed)} of {len(cases)} case(s) from {path}"
              + "".join(f"\n  {c}" for c in removed) + "\n")
    return 0


def _recorded(entry: dict[str, Any]) -> dt.datetime:
    """When an entry was recorded; an entry without a readable date counts as very old."""
    text = str(entry.get("recorded", ""))
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        return dt.datetime.min.replace(tzinfo=dt.timezone.utc)


def _report_ids(path: Path) -> set[str]:
    from pytest_xfperf.report.json_report import read_report

    try:
        return {str(c["id"]) for c in read_report(path)["cases"]}
    except (ValueError, KeyError, TypeError) as exc:
        raise CliError(str(exc) if isinstance(exc, ValueError) else
                       f"{path}: not a readable xfperf JSON report (--xfperf-report): "
                       f"{exc!r}") from None


def report(args: argparse.Namespace, out: Any) -> int:
    from pytest_xfperf.report.render import render_outputs, results_from_report

    if not (args.markdown or args.html or args.plots):
        raise CliError("report needs at least one output: --markdown PATH, --html PATH or "
                       "--plots DIR")
    try:
        results, meta = results_from_report(args.report)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    # Regressed cases carry their baseline's samples in the report (for the distribution
    # plot); --baselines supplies them for the others too.
    samples = {r.case.id: (r.raw or {}).get("baseline_samples_ms") or [] for r in results}
    if args.baselines:
        for case_id, entry in _load(args.baselines)["cases"].items():
            samples.setdefault(case_id, entry.get("samples_ms", []))
            samples[case_id] = samples[case_id] or entry.get("samples_ms", [])
    prices = dict(meta.get("prices") or {})
    if args.price_per_hour is not None:
        prices[str(meta.get("machine", {}).get("key", ""))] = args.price_per_hour
    messages = render_outputs(results, meta, samples, prices, args.markdown, args.html,
                              args.plots, notes=meta.get("notes", []), github_summary=False)
    for message in messages:
        out.write(message + "\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m pytest_xfperf", description=__doc__.split(
        "\n")[0])
    top = parser.add_subparsers(dest="command", required=True)
    baselines = top.add_parser("baselines", help="inspect, compare and prune baseline files")
    sub = baselines.add_subparsers(dest="action", required=True)
    p_show = sub.add_parser("show", help="the cases of a baseline file and their figures")
    p_show.add_argument("file", type=Path)
    p_show.add_argument("--case", action="append", help="only case ids matching this glob")
    p_diff = sub.add_parser("diff", help="compare two baseline files case by case")
    p_diff.add_argument("old", type=Path)
    p_diff.add_argument("new", type=Path)
    p_diff.add_argument("--case", action="append", help="only case ids matching this glob")
    p_prune = sub.add_parser("prune", help="drop cases (all criteria given must match)")
    p_prune.add_argument("file", type=Path)
    p_prune.add_argument("--case", action="append", help="case ids matching this glob")
    p_prune.add_argument("--older-than", type=float, metavar="DAYS",
                         help="recorded more than DAYS days ago")
    p_prune.add_argument("--not-in", type=Path, metavar="REPORT",
                         help="absent from this JSON report (cases no longer in the matrix)")
    p_prune.add_argument("--dry-run", action="store_true", help="list, do not remove")
    p_report = top.add_parser("report", help="Markdown, HTML and plots from a JSON report")
    p_report.add_argument("report", type=Path, help="a file written by --xfperf-report")
    p_report.add_argument("--markdown", type=Path)
    p_report.add_argument("--html", type=Path)
    p_report.add_argument("--plots", type=Path, metavar="DIR")
    p_report.add_argument("--baselines", type=Path,
                          help="baseline file: plots compare regressed cases with its samples")
    p_report.add_argument("--price-per-hour", type=float,
                          help="price of the machine per hour, for cost per million requests")
    history = top.add_parser("history", help="the run history: import reports, show series")
    h_sub = history.add_subparsers(dest="action", required=True)
    h_import = h_sub.add_parser("import", help="add JSON reports (--xfperf-report) to the "
                                "history; a report already there is skipped")
    h_import.add_argument("reports", type=Path, nargs="+")
    h_show = h_sub.add_parser("show", help="a case's runs, oldest first, and the drift test")
    h_show.add_argument("case", help="case id or glob, e.g. 'bert-base/ort-cpu/*'")
    h_show.add_argument("--machine", help="only this machine key (default: every machine)")
    h_show.add_argument("--metric", help="block metric, e.g. p50_ms or tpot_ms (default: the "
                        "case's own)")
    h_show.add_argument("--plot", type=Path, metavar="PNG", help="draw the series (matplotlib)")
    h_spreads = h_sub.add_parser(
        "spreads", help="between-process spreads of the cases of a baseline file, from the "
        "unchanged runs gated against it (for [tool.xfperf] spreads)")
    h_spreads.add_argument("--baseline", type=Path, required=True, metavar="FILE",
                           help="the baseline file the runs were gated against")
    h_spreads.add_argument("--cases", default="*", metavar="GLOB",
                           help="only these case ids (default: every case of the file)")
    for sub_parser in (h_import, h_show, h_spreads):
        sub_parser.add_argument("--history", type=Path, metavar="DB",
                                help="history file (default: [tool.xfperf] history of the "
                                     "project here, else .xfperf/history.db)")
    return parser


def build_merge_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_xfperf report merge",
        description="one report of several runs (shards, machines): machines side by side")
    parser.add_argument("reports", type=Path, nargs="+", help="files written by --xfperf-report")
    parser.add_argument("--markdown", type=Path)
    parser.add_argument("--html", type=Path)
    return parser


def history_command(args: argparse.Namespace, out: Any) -> int:
    from pytest_xfperf.baselines.store import BaselineError
    from pytest_xfperf.history import commands
    from pytest_xfperf.history.db import HistoryError

    try:
        path = commands.history_path(args.history, Path.cwd())
        if args.action == "import":
            return commands.import_reports(path, args.reports, out)
        if args.action == "spreads":
            from pytest_xfperf.history.spreads import report
            from pytest_xfperf.settings import parse_spreads, read_pyproject

            spreads = read_pyproject(Path.cwd()).get("spreads")
            return report(path, args.baseline, args.cases, out,
                          parse_spreads(spreads) if spreads is not None else None)
        return commands.show(path, args.case, args.machine, args.metric, args.plot, out)
    except (HistoryError, BaselineError, ValueError) as exc:
        raise CliError(str(exc)) from None


def merge_command(argv: Sequence[str], out: Any) -> int:
    from pytest_xfperf.report.merge import merge

    args = build_merge_parser().parse_args(argv)
    try:
        return merge(args.reports, args.markdown, args.html, out)
    except (ValueError, OSError) as exc:
        raise CliError(str(exc)) from None


def main(argv: Sequence[str] | None = None, out: Any = None) -> int:
    out = out or sys.stdout
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        # `report merge` beside `report REPORT.json`: a report file is never named "merge".
        if argv[:2] == ["report", "merge"]:
            return merge_command(argv[2:], out)
        args = build_parser().parse_args(argv)
        if args.command == "history":
            return history_command(args, out)
        if args.command == "report":
            return report(args, out)
        if args.action == "show":
            return show(args.file, args.case, out)
        if args.action == "diff":
            return diff(args.old, args.new, args.case, out)
        return prune(args.file, args.case, args.older_than, args.not_in, args.dry_run, out)
    except CliError as exc:
        sys.stderr.write(f"pytest-xfperf: {exc}\n")
        return 2
