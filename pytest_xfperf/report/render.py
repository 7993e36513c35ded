"""Writes the human-readable reports of a run: Markdown (and the GitHub step summary), PNG
plots, single-file HTML. A report that cannot be written is a message, never a failed run."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_xfperf.fileio import atomic_write_bytes
from pytest_xfperf.notes import Notes
from pytest_xfperf.report import html as html_report
from pytest_xfperf.report import markdown
from pytest_xfperf.report.json_report import read_report
from pytest_xfperf.report.tables import build_groups, recommendations
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Settings


def price_for(prices: Mapping[str, float], machine_key: str) -> tuple[str, float] | None:
    if machine_key in prices:
        return machine_key, prices[machine_key]
    return None


def render_outputs(
    results: Sequence[Result],
    meta: Mapping[str, Any],
    baseline_samples: Mapping[str, Sequence[float]],
    prices: Mapping[str, float],
    markdown_path: Path | None,
    html_path: Path | None,
    plots_dir: Path | None,
    notes: Sequence[str] = (),
    github_summary: bool = True,
) -> list[str]:
    """Write what was asked; return one message per output (written, or why not)."""
    messages: list[str] = []
    key = str(meta.get("machine", {}).get("key", ""))
    price = price_for(prices, key)
    if prices and price is None:
        messages.append(f"xfperf: no price for this machine `{key}` (prices are set for "
                        f"{', '.join(sorted(prices))}): the cost column is empty")
    groups = build_groups(results, price[1] if price else None)
    picks = recommendations(groups)
    charts: dict[str, tuple[str, bytes]] = {}
    plots_note = ""
    if plots_dir is not None or html_path is not None:
        from pytest_xfperf.report.plots import PlotsUnavailable, make_plots

        try:
            charts = make_plots(groups, results, baseline_samples)
        except PlotsUnavailable as exc:
            plots_note = f"plots skipped: {exc}"
            messages.append(f"xfperf: {plots_note}")
    if plots_dir is not None and charts:
        try:
            plots_dir.mkdir(parents=True, exist_ok=True)
            for name, png in charts.values():
                atomic_write_bytes(plots_dir / name, png)
            messages.append(f"xfperf: {len(charts)} plot(s) written to {plots_dir}")
        except OSError as exc:
            messages.append(f"xfperf: could not write the plots to {plots_dir}: {exc}")
    step_summary = os.environ.get("GITHUB_STEP_SUMMARY") if github_summary else None
    if markdown_path is not None or step_summary:
        links = ({g: str(Path(plots_dir.name) / charts[g][0]) for g in charts}
                 if plots_dir is not None and markdown_path is not None else {})
        text = markdown.render(results, groups, picks, meta, price, notes, links)
        if markdown_path is not None:
            _write(markdown_path, text.encode("utf-8"), "Markdown report", messages)
        if step_summary:
            try:  # appended, as GitHub asks: other steps write to the same file
                with open(step_summary, "a", encoding="utf-8") as handle:
                    handle.write(text)
                messages.append("xfperf: Markdown report appended to $GITHUB_STEP_SUMMARY")
            except OSError as exc:
                messages.append(f"xfperf: could not append to $GITHUB_STEP_SUMMARY "
                                f"({step_summary}): {exc}")
    if html_path is not None:
        page = html_report.render(results, groups, picks, meta, price, notes, charts, plots_note)
        _write(html_path, page.encode("utf-8"), "HTML report", messages)
    return messages


def _write(path: Path, data: bytes, what: str, messages: list[str]) -> None:
    try:
        atomic_write_bytes(path, data)
        messages.append(f"xfperf: {what} written to {path}")
    except OSError as exc:
        messages.append(f"xfperf: could not write the {what} {path}: {exc}")


def results_from_report(path: Path) -> tuple[list[Result], dict[str, Any]]:
    """The results and run facts of a JSON report (``--xfperf-report``); ValueError when the
    file is not one."""
    return results_of(read_report(path), path)


def results_of(data: Mapping[str, Any], path: Path) -> tuple[list[Result], dict[str, Any]]:
    """The results and run facts of a report ``path`` held, already read."""
    try:
        results = [Result.from_json(case) for case in data["cases"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable xfperf JSON report (--xfperf-report): "
                         f"{exc!r}") from None
    meta = {k: v for k, v in data.items() if k != "cases"}
    return results, meta


def write_reports(settings: Settings, results: Sequence[Result],
                  baselines: Mapping[str, Any], machine: Mapping[str, Any],
                  notes: Notes, report: dict[str, Any] | None = None) -> None:
    """The run's JSON report (``report``, built by ``json_report.build_report``; its notes are
    brought up to date here), then Markdown / step summary, plots and HTML. A failure here
    is a note: the run's verdict is the tests' alone."""
    import time

    paths = settings.reports
    if paths.report is not None and report is not None:
        from pytest_xfperf.report.json_report import write_report

        report["notes"] = notes.lines()
        try:
            write_report(paths.report, report)
            notes.add(f"JSON report written to {paths.report}")
        except OSError as exc:
            notes.add(f"could not write the JSON report {paths.report}: {exc}")
    wanted = (paths.markdown, paths.html, paths.plots)
    if not results or not (any(wanted) or os.environ.get("GITHUB_STEP_SUMMARY")):
        return
    started = time.perf_counter()
    try:
        from pytest_xfperf.versions import library_versions

        samples = {case_id: entry.get("samples_ms", []) for case_id, entry in baselines.items()}
        messages = render_outputs(results, {"machine": dict(machine),
                                            "versions": library_versions()},
                                  samples, paths.prices, *wanted, notes=notes.lines())
    except Exception as exc:  # noqa: BLE001 - a broken report must not change the verdict
        messages = [f"the human-readable reports failed ({type(exc).__name__}: {exc}); the "
                    "test results above are unaffected"]
    notes.extend(messages)
    notes.add(f"reports generated in {time.perf_counter() - started:.2f} s")
