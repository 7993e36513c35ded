"""``python -m pytest_xfperf history spreads``: a suite's own between-process spreads, from the
runs its history holds.

Each gated run leaves its block medians (and its yardstick's) in the history. Runs of an
unchanged suite against one baseline file are A/A trials: the Hodges-Lehmann shift of a run's
blocks against the baseline's is how far the case's level moved between the recording process
and that run, in each view. The root mean square of their logs is what ``GatePolicy``'s
spreads stand for (docs/gate.md), measured on the suite's own models and machine instead of
the defaults' power-run encoder. Runs that recorded the baseline, or changed the model, are not
A/A trials: give a history of unchanged runs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pytest_xfperf.baselines import gate, pooling, rule
from pytest_xfperf.history.db import History

PRIMARY_RECORDS = ("p50_ms", "tpot_ms", "ttft_ms")
# Verdicts of results that were not compared with the baseline.
NOT_COMPARED = ("recorded", "no baseline", "other machine")


@dataclass
class CaseTrials:
    case_id: str
    ratios: dict[str, list[float]] = field(default_factory=dict)  # by spread name

    def add(self, name: str, ratio: float) -> None:
        self.ratios.setdefault(name, []).append(ratio)


def rms_of_log(ratios: list[float]) -> float:
    return math.sqrt(statistics.fmean(math.log(r) ** 2 for r in ratios))


def rms_interval(rms: float, trials: int, z: float = 1.96) -> tuple[float, float]:
    """The interval (``z`` 1.96: 95 %) of the spread that ``trials`` shifts with root mean
    square ``rms`` allow: ``trials x (rms / spread)^2`` is chi-square with ``trials`` degrees
    of freedom (shifts centred on no change), its quantiles by Wilson and Hilferty's
    approximation."""

    def quantile(sign: float) -> float:
        k = 2 / (9 * trials)
        return trials * (1 - k + sign * z * math.sqrt(k)) ** 3

    low_q = max(quantile(-1), 1e-9)  # the approximation's lower quantile can reach zero
    return rms * math.sqrt(trials / quantile(+1)), rms * math.sqrt(trials / low_q)


def trials(db: History, baseline: Mapping[str, Any], pattern: str = "*") -> list[CaseTrials]:
    """Every compared run of every case of ``baseline`` (a loaded baseline file) on its
    machine, as shifts against the baseline's blocks by spread name."""
    machine = baseline.get("machine")
    key = machine.get("key") if isinstance(machine, Mapping) else None
    if not isinstance(key, str):
        raise ValueError("the baseline file names no machine key: record it again")
    cases: Mapping[str, Any] = baseline.get("cases", {})
    out = []
    for case_id in db.case_ids(pattern):
        entry = cases.get(case_id)
        if not isinstance(entry, Mapping):
            continue
        # Every block record the baseline holds: ``timing`` (latency, or a generation's TPOT,
        # its TTFT where it generates one token) and ``more_timing`` (a generation's TTFT,
        # which has a spread of its own on a GPU).
        more = entry.get("more_timing")
        more = more if isinstance(more, Mapping) else {}
        found = CaseTrials(case_id)
        for point in db.series(case_id, key):
            if point.verdict in NOT_COMPARED:
                continue
            primary = next((name for name in PRIMARY_RECORDS
                            if name in point.summary and name not in more), None)
            pairs = [(point.summary.get(primary or ""), entry.get("timing")),
                     *((point.summary.get(name), then) for name, then in more.items())]
            for now, then in pairs:
                if (not isinstance(then, Mapping) or not isinstance(now, Mapping)
                        or "case_ms" not in now or now.get("clock") != then.get("clock")
                        or list(now["case_ms"]) == list(then["case_ms"])):
                    continue
                views, _ = gate.block_views(now, then, rule.DEFAULT_POLICY, spread=False)
                # The run's pacing, as the gate reads it; a run from before history kept it
                # takes the baseline's.
                pacing = str(now.get("pacing", then.get("pacing", "")))
                # A spread stands for the shift between two single processes; against a
                # baseline pooled from several, the shift moves less by spread_factor.
                scale = 1 / pooling.spread_factor(pooling.processes_of(then))
                for view in views:
                    found.add(rule.GatePolicy.spread_name(
                        str(then.get("clock")), view.normalized, pacing), view.ratio ** scale)
        if found.ratios:
            out.append(found)
    return out


def report(history: Path, baseline_file: Path, pattern: str, out: Any,
           configured: rule.GatePolicy | None = None) -> int:
    """Each case's spreads and the pooled ones, beside the defaults and, where the project
    sets its own (``configured``, from ``[tool.xfperf] spreads``), beside those: a measured
    spread above the one the gate uses makes its intervals too narrow for this machine."""
    from pytest_xfperf.baselines.store import load

    baseline = load(baseline_file)
    with History(history, create=False) as db:
        found = trials(db, baseline, pattern)
    if not found:
        raise ValueError(f"{history}: no run of a case of {baseline_file} was compared with "
                         "it on its machine; run the suite against that baseline first")
    pooled: dict[str, list[float]] = {}
    out.write("case: trials, root mean square of the log of its shifts by spread\n")
    for case in found:
        parts = []
        for name, ratios in sorted(case.ratios.items()):
            pooled.setdefault(name, []).extend(ratios)
            parts.append(f"{name} {rms_of_log(ratios):.3f}")
        count = max(len(r) for r in case.ratios.values())
        out.write(f"  {case.case_id}: {count}, {', '.join(parts)}\n")
    measured = {name: rms_of_log(ratios) for name, ratios in sorted(pooled.items())}
    for name, value in measured.items():
        default = getattr(rule.DEFAULT_POLICY, f"spread_{name}")
        used = getattr(configured, f"spread_{name}") if configured else default
        count = len(pooled[name])
        low, high = rms_interval(value, count)
        set_here = "" if used == default else f"; [tool.xfperf] here {used}"
        # Flagged only where the trials show it: their interval lies wholly above the setting.
        above = (f": above the {used} this project's gate uses, beyond what {count} trials "
                 "leave in doubt, so its intervals are too narrow for these runs"
                 if low > used else "")
        out.write(f"{name}: {value:.3f} over {count} trials (95 % {low:.3f} .. {high:.3f}; "
                  f"default {default}{set_here}){above}\n")
    table = ", ".join(f"{name} = {max(value, 0.001):.3f}" for name, value in measured.items())
    out.write(f"[tool.xfperf] spreads = {{ {table} }}\n")
    return 0
