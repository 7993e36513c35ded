"""A case's history series, this run appended, through the drift test of ``trend.py``."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_xfperf.history.db import SeriesPoint
from pytest_xfperf.history.trend import DEFAULT_TREND, TrendPolicy, assess


def views(summaries: Sequence[Mapping[str, Any]], metric: str
          ) -> tuple[list[float], list[float] | None, list[int]]:
    """The own-time and yardstick-normalized levels of ``metric`` over the runs whose summary
    has it on the same clock as the last run's, and their indices in ``summaries``; the
    normalized view only where all of those runs timed the last run's yardstick."""
    last = summaries[-1].get(metric) or {}
    kept = [i for i, s in enumerate(summaries)
            if isinstance(s.get(metric), Mapping) and s[metric].get("clock") == last.get("clock")
            and s[metric].get("own", 0) > 0]
    own = [float(summaries[i][metric]["own"]) for i in kept]
    normalized: list[float] | None = None
    if last.get("normalized") and all(
            summaries[i][metric].get("yardstick") == last.get("yardstick")
            and summaries[i][metric].get("normalized") for i in kept):
        normalized = [float(summaries[i][metric]["normalized"]) for i in kept]
    return own, normalized, kept


def finding(points: Sequence[SeriesPoint], current: Mapping[str, Any], metric: str,
            policy: TrendPolicy = DEFAULT_TREND) -> dict[str, Any] | None:
    """The drift test on the stored runs (oldest first) and this run's summary; None when
    there are too few comparable runs. ``since_*`` name the first run of the later segment
    (``since_run`` None: this run)."""
    summaries = [p.summary for p in points] + [current]
    own, normalized, kept = views(summaries, metric)
    trend = assess(own, normalized, policy)
    if trend is None:
        return None
    window = kept[-policy.window:]
    first = window[trend.binding.split]
    point = points[first] if first < len(points) else None
    return {
        "metric": metric, "drifting": trend.drifting, "faster": trend.faster,
        "shift": round(trend.binding.shift, 5), "p_value": trend.binding.p_value,
        "runs": trend.binding.runs, "since_run": point.run_id if point else None,
        "since": point.started if point else "this run",
        "since_commit": point.git_commit if point else None,
        "views": [v.as_dict() for v in trend.views],
    }


def describe(found: Mapping[str, Any]) -> str:
    """One line for the failure message and the summary."""
    where = ("this run" if found.get("since_run") is None else
             f"run {found['since_run']} ({str(found['since'])[:10]}"
             + (f", {str(found['since_commit'])[:10]}" if found.get("since_commit") else "")
             + ")")
    what = "drifting" if found["drifting"] else "faster" if found["faster"] else "steady"
    p_value = found.get("p_value")
    tested = ("too small a change to test" if p_value is None
              else f"permutation p = {p_value:.3f}")
    return (f"{found['metric']} {what}: {found['shift'] - 1:+.1%} from {where} on, "
            f"over the last {found['runs']} runs ({tested})")
