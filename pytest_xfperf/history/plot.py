"""``history show --plot``: each series' run levels, with the drift test's change point."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_xfperf.fileio import atomic_write_bytes
from pytest_xfperf.history.db import SeriesPoint
from pytest_xfperf.report.plots import _pyplot


def plot_series(series: Sequence[tuple[str, Sequence[SeriesPoint], str,
                                      Mapping[str, Any] | None]], path: Path) -> None:
    """One panel per series: the own-time level of each run (ms), the yardstick-normalized one
    on a second axis, and a dashed line where a drifting change starts."""
    plt = _pyplot()
    figure, axes = plt.subplots(len(series), 1, figsize=(9, 3.2 * len(series)), squeeze=False)
    for axis, (title, points, metric, found) in zip(axes[:, 0], series, strict=True):
        runs = [p.run_id for p in points]
        own = [(p.summary.get(metric) or {}).get("own") for p in points]
        axis.plot(runs, own, "o-", color="tab:blue", label=f"{metric} (own time)")
        axis.set_ylabel("ms")
        normalized = [(p.summary.get(metric) or {}).get("normalized") for p in points]
        if any(v is not None for v in normalized):
            twin = axis.twinx()
            twin.plot(runs, normalized, "s--", color="tab:orange", alpha=0.6,
                      label="per yardstick")
            twin.set_ylabel("case / yardstick")
        if found and found.get("since_run") is not None and (found["drifting"]
                                                              or found["faster"]):
            axis.axvline(found["since_run"] - 0.5, color="tab:red", linestyle=":",
                         label=f"{'drifting' if found['drifting'] else 'faster'} "
                               f"{found['shift'] - 1:+.1%}")
        axis.set_title(title, fontsize=9)
        axis.set_xlabel("run")
        axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    atomic_write_bytes(path, buffer.getvalue())
