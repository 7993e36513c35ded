"""PNG charts with matplotlib (optional: ``pip install 'pytest-xfperf[report]'``).

- latency by backend/precision, one chart per model and shape (p50 bars, p99 marks);
- throughput against batch size, one chart per model (single-stream cases, two or more
  batch sizes);
- this run's latency samples against the baseline's, for every case that regressed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_xfperf.metrics import Verdict
from pytest_xfperf.report.tables import Group
from pytest_xfperf.result import Result


class PlotsUnavailable(Exception):
    pass


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise PlotsUnavailable("matplotlib is not installed: pip install "
                               "'pytest-xfperf[report]' (or matplotlib)") from None
    matplotlib.use("Agg", force=True)  # files only: never a window, works without a display
    import matplotlib.pyplot as plt

    return plt


def file_name(title: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", title).strip("_") + ".png"


def _png(plt: Any, figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=96, bbox_inches="tight")
    plt.close(figure)
    return buffer.getvalue()


def offline_chart(plt: Any, group: Group) -> bytes | None:
    rows = [r for r in group.rows if r.throughput]
    if not rows:
        return None
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    axes.barh([r.label for r in rows], [r.throughput for r in rows],
              color=["#c0392b" if r.failed else "#27ae60" for r in rows])
    axes.invert_yaxis()
    axes.set_xlabel("requests/s (dynamic batching)")
    axes.set_title(group.title)
    axes.grid(axis="x", alpha=0.3)
    return _png(plt, figure)


def latency_chart(plt: Any, group: Group) -> bytes | None:
    if group.scenario == "offline":
        return offline_chart(plt, group)
    rows = [r for r in group.rows if r.p50_ms is not None]
    if not rows:
        return None
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(rows) + 1.2))
    labels = [r.label for r in rows]
    p50 = [r.p50_ms for r in rows]
    colors = ["#c0392b" if r.failed else "#2e86c1" for r in rows]
    axes.barh(labels, p50, color=colors, label="p50")
    p99 = [r.p99_ms for r in rows]
    axes.scatter(p99, labels, marker="|", s=200, color="black", label="p99", zorder=3)
    axes.invert_yaxis()
    axes.set_xlabel("latency, ms (queueing included)" if group.scenario == "server"
                    else "latency per call, ms")
    axes.set_title(group.title + ("" if group.scenario != "server" else " at its highest rate"))
    axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: never over a mark
    axes.grid(axis="x", alpha=0.3)
    return _png(plt, figure)


def throughput_chart(plt: Any, model: str, results: Sequence[Result]) -> bytes | None:
    series: dict[str, dict[int, float]] = {}
    for r in results:
        if r.case.model == model and not r.case.serving and r.stats is not None:
            key = f"{r.case.backend}/{r.case.precision} seq {r.case.shape.seq}"
            series.setdefault(key, {})[r.case.shape.batch] = r.stats.throughput
    series = {k: v for k, v in series.items() if len(v) >= 2}
    if not series:
        return None
    figure, axes = plt.subplots(figsize=(7, 4))
    for label, points in sorted(series.items()):
        batches = sorted(points)
        axes.plot(batches, [points[b] for b in batches], marker="o", label=label)
    axes.set_xscale("log", base=2)
    axes.set_xlabel("batch size")
    axes.set_ylabel("samples/s")
    axes.set_title(f"{model}: throughput vs batch size")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(plt, figure)


def distribution_chart(plt: Any, result: Result, baseline_samples: Sequence[float]
                       ) -> bytes | None:
    if not result.samples_ms or not baseline_samples:
        return None
    figure, axes = plt.subplots(figsize=(7, 3.5))
    low = min(min(result.samples_ms), min(baseline_samples))
    high = max(max(result.samples_ms), max(baseline_samples))
    bins = [low + (high - low) * i / 40 for i in range(41)] if high > low else 10
    axes.hist(baseline_samples, bins=bins, alpha=0.6, label=f"baseline ({len(baseline_samples)})",
              color="#7f8c8d")
    axes.hist(result.samples_ms, bins=bins, alpha=0.6, label=f"this run ({len(result.samples_ms)})",
              color="#c0392b")
    axes.set_xlabel("latency per call, ms")
    axes.set_ylabel("samples")
    axes.set_title(f"{result.case.id}: {result.verdict.value}")
    axes.legend()
    return _png(plt, figure)


def make_plots(groups: Sequence[Group], results: Sequence[Result],
               baseline_samples: Mapping[str, Sequence[float]]) -> dict[str, tuple[str, bytes]]:
    """title -> (file name, PNG). Raises PlotsUnavailable without matplotlib."""
    plt = _pyplot()
    charts: dict[str, tuple[str, bytes]] = {}
    for group in groups:
        png = latency_chart(plt, group)
        if png:
            charts[group.title] = ("latency_" + file_name(group.title), png)
    for model in dict.fromkeys(r.case.model for r in results):
        png = throughput_chart(plt, model, results)
        if png:
            charts[f"{model} throughput"] = ("throughput_" + file_name(model), png)
    for r in results:
        if r.verdict == Verdict.REGRESSED and r.case.id in baseline_samples:
            png = distribution_chart(plt, r, baseline_samples[r.case.id])
            if png:
                charts[f"{r.case.id} samples"] = ("samples_" + file_name(r.case.id), png)
    return charts
