"""``--xfperf-shard K/N``: a deterministic share of the matrix, balanced by recorded cost.

The rule: cases of one model and shape form a group (they share the model, its exported and
optimized artifacts and the speed-up's PyTorch reference). A group's cost is the sum of its
cases' recorded seconds; a group costing more than a fair share (the total over N) is split
into its cases, since keeping it whole could not balance. The units, costliest first (ties by
name), go one by one to the shard with the least cost so far (ties: the lower index): the
longest-processing-time rule. Costs are read from every baseline file of the baselines
directory (committed with the code, so every runner of one commit reads the same), else from
the history; a case neither has costs the median of the known ones (all cost 1 where none is
known). Every shard computes the whole partition from the same inputs and runs its own part;
its report names the partition's digest, which ``report merge`` checks across shards.
"""

from __future__ import annotations

import hashlib
import json
import re
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

_SPEC = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1-based
    count: int

    @classmethod
    def parse(cls, text: object) -> ShardSpec:
        match = _SPEC.match(str(text))
        if match is None:
            raise ValueError(f"malformed shard {text!r}: write K/N with 1 <= K <= N, for "
                             "example 2/4 (the second of four shards)")
        index, count = int(match.group(1)), int(match.group(2))
        if count < 1 or not 1 <= index <= count:
            raise ValueError(f"shard {text!r} does not exist: K/N needs 1 <= K <= N (shards "
                             "are numbered from 1), for example 1/4 .. 4/4")
        return cls(index, count)

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class Unit:
    name: str
    cases: tuple[str, ...]
    cost: float


def baseline_costs(directory: Path) -> dict[str, float]:
    """Each case's median recorded seconds over the baseline files of ``directory``."""
    by_case: dict[str, list[float]] = {}
    for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            cases = json.loads(path.read_text(encoding="utf-8")).get("cases", {})
        except (OSError, ValueError, AttributeError):
            continue  # a damaged file is the gate's to report; it holds no costs
        for case_id, entry in cases.items() if isinstance(cases, dict) else ():
            seconds = entry.get("seconds") if isinstance(entry, dict) else None
            if isinstance(seconds, (int, float)) and seconds > 0:
                by_case.setdefault(case_id, []).append(float(seconds))
    return {case_id: statistics.median_high(v) for case_id, v in by_case.items()}


def recorded_costs(baselines_dir: Path, history: Path | None,
                   case_ids: Sequence[str]) -> tuple[dict[str, float], str]:
    """The costs of ``case_ids`` and where they came from (see the module's rule)."""
    wanted = set(case_ids)
    known = {k: v for k, v in baseline_costs(baselines_dir).items() if k in wanted}
    source = "baselines"
    if not known and history is not None and history.is_file():
        from pytest_xfperf.history.db import History, HistoryError

        try:
            with History(history, create=False) as db:
                known = {k: v for k, v in db.costs().items() if k in wanted}
            source = "history"
        except HistoryError:
            known = {}
    if not known:
        return {case_id: 1.0 for case_id in case_ids}, "counts"
    fallback = statistics.median_high(known.values())
    return {case_id: known.get(case_id, fallback) for case_id in case_ids}, source


def partition(groups: Mapping[str, Sequence[str]], costs: Mapping[str, float], count: int
              ) -> dict[str, int]:
    """Each case's shard (1-based) under the module's rule; ``groups`` maps a group's name to
    its cases."""
    total = sum(costs[c] for cases in groups.values() for c in cases)
    fair = total / count
    units: list[Unit] = []
    for name, cases in groups.items():
        cost = sum(costs[c] for c in cases)
        if cost > fair and len(cases) > 1:
            units.extend(Unit(c, (c,), costs[c]) for c in cases)
        else:
            units.append(Unit(name, tuple(cases), cost))
    loads = [0.0] * count
    assignment: dict[str, int] = {}
    for unit in sorted(units, key=lambda u: (-u.cost, u.name)):
        shard = min(range(count), key=lambda i: (loads[i], i))
        loads[shard] += unit.cost
        for case_id in unit.cases:
            assignment[case_id] = shard + 1
    return assignment


def digest(assignment: Mapping[str, int]) -> str:
    """A short name of the partition: equal on every shard that computed the same one."""
    text = "\n".join(f"{case_id}\t{shard}" for case_id, shard in sorted(assignment.items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
