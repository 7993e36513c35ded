"""A baseline pooled from the recordings of several processes (``--xfperf-pool-recordings``).

Every shift has two process draws in it: the baseline's and this run's. A baseline recorded
in one process carries its draw into every later comparison. Pooled from k processes, the
baseline's level is the median of theirs (on the log scale), and a shift's variance between
processes falls from 2σ² (two single processes) to (1 + v_k)σ², v_k the variance of the
median of k normal draws in units of σ²: each between-process spread is scaled by
``spread_factor(k)``. The median, not the mean: one process in an odd state (an eager
PyTorch reference 4x its usual time was seen on a 2-core host) moves a mean by a third of
its offset at k = 3 and a median not at all. Each process's blocks are moved, on the log
scale, from their own median to the pooled level before they are put together, so that the
blocks show only the scatter within a process; the scatter between processes is what the
spread stands for (docs/gate.md, "A baseline from several processes").

A recording joins the pool only where it measured the same thing: the same library versions,
graph and settings, and block records with the same clock, yardstick, pacing and reference.
Otherwise the pool starts again from this recording.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from typing import Any

MAX_PROCESSES = 5  # 5 x 12 recorded blocks stay within the store's 64 blocks a record
# What an entry's recordings must share to be pooled: the same measured setup.
SAME_ENTRY = ("versions", "graph", "settings")
SAME_RECORD = ("clock", "yardstick", "pacing", "reference")
BLOCK_SERIES = ("case_ms", "yardstick_ms")  # a process's own blocks, as a record holds them


# Variance of the median of k standard normal draws (k = 2: their mean).
MEDIAN_VARIANCE = {1: 1.0, 2: 0.5, 3: 0.449, 4: 0.298, 5: 0.287}


def spread_factor(processes: int) -> float:
    """How a between-process spread (measured between two single processes) scales when the
    baseline is the median of ``processes`` processes."""
    return math.sqrt((1 + MEDIAN_VARIANCE[min(processes, MAX_PROCESSES)]) / 2)


def processes_of(record: Mapping[str, Any] | None) -> int:
    """How many processes a block record's blocks come from."""
    pooled = (record or {}).get("processes")
    return len(pooled) if isinstance(pooled, list) and pooled else 1


def _own_blocks(record: Mapping[str, Any]) -> list[dict[str, list[float]]]:
    """A record's blocks, process by process (oldest first), as each process measured them."""
    pooled = record.get("processes")
    if isinstance(pooled, list) and pooled:
        return [dict(p) for p in pooled]
    return [{key: list(record[key]) for key in BLOCK_SERIES if record.get(key)}]


def _median_log(values: Sequence[float]) -> float:
    return statistics.median(math.log(v) for v in values)


def recentred(processes: Sequence[Mapping[str, Sequence[float]]]) -> dict[str, list[float]]:
    """The processes' blocks put together, each process's moved (log scale) so that both
    views sit at the median of the processes' levels: its case blocks from their own median
    to the median of the processes' case medians, and its yardstick blocks so that its case
    blocks divided by them move from their own median to the median of the processes'
    divided medians. (Two independent medians, one per series, could take the case's level
    from one process and the yardstick's from another: a divided level no process had.)"""
    cases = [_median_log(p["case_ms"]) for p in processes]
    moves = [statistics.median(cases) - own for own in cases]
    out = {"case_ms": [round(v * math.exp(move), 5)
                       for p, move in zip(processes, moves, strict=True) for v in p["case_ms"]]}
    if all(p.get("yardstick_ms") for p in processes):
        divided = [_median_log([c / y for c, y in zip(p["case_ms"], p["yardstick_ms"],
                                                      strict=True)]) for p in processes]
        level = statistics.median(divided)
        out["yardstick_ms"] = [
            round(v * math.exp(move - (level - own)), 5)
            for p, move, own in zip(processes, moves, divided, strict=True)
            for v in p["yardstick_ms"]]
    return out


def pooled_record(new: Mapping[str, Any], old: Mapping[str, Any], limit: int,
                  max_blocks: int) -> dict[str, Any]:
    """``new`` (one process's record) pooled with ``old``'s processes: the newest ``limit``
    processes, fewer where their blocks would pass ``max_blocks``."""
    processes = [*_own_blocks(old), *_own_blocks(new)][-limit:]
    while len(processes) > 1 and sum(len(p["case_ms"]) for p in processes) > max_blocks:
        processes.pop(0)
    if len(processes) == 1:
        return dict(new)
    return {**new, **recentred(processes), "processes": processes}


def _records(entry: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """An entry's block records by where they sit: timing, speedup, more_timing.<metric>."""
    out = {name: entry[name] for name in ("timing", "speedup")
           if isinstance(entry.get(name), Mapping)}
    more = entry.get("more_timing")
    if isinstance(more, Mapping):
        out.update({f"more_timing.{k}": v for k, v in more.items() if isinstance(v, Mapping)})
    return out


def why_not_pooled(new: Mapping[str, Any], old: Mapping[str, Any] | None) -> str | None:
    """Why ``new`` cannot join ``old``'s recordings (None: it can)."""
    if not old:
        return "no earlier recording"
    for key in SAME_ENTRY:
        if new.get(key) != old.get(key):
            verb = "differ" if key.endswith("s") else "differs"
            return f"its {key} {verb} from the earlier recording's"
    new_records, old_records = _records(new), _records(old)
    if set(new_records) != set(old_records):
        return "it timed other figures than the earlier recording"
    for name, record in new_records.items():
        for key in SAME_RECORD:
            if record.get(key) != old_records[name].get(key):
                return f"its {name} {key} differs from the earlier recording's"
        if bool(record.get("yardstick_ms")) != bool(old_records[name].get("yardstick_ms")):
            return f"its {name} yardstick blocks differ from the earlier recording's"
    return None


def pooled_entry(new: Mapping[str, Any], old: Mapping[str, Any] | None, limit: int,
                 max_blocks: int) -> tuple[dict[str, Any], str | None]:
    """``new`` with each block record pooled with ``old``'s (up to ``limit`` processes), where
    both measured the same setup; else ``new`` as it is, with why it was not pooled."""
    reason = why_not_pooled(new, old)
    if reason is not None or old is None:
        return dict(new), reason
    out = dict(new)
    old_records = _records(old)
    for name, record in _records(new).items():
        pooled = pooled_record(record, old_records[name], limit, max_blocks)
        if name.startswith("more_timing."):
            out["more_timing"] = {**out["more_timing"], name.split(".", 1)[1]: pooled}
        else:
            out[name] = pooled
    return out, None
