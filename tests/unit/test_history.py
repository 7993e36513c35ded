"""The run history: the drift test on synthetic series with known answers, the SQLite store
(schema, foreign and damaged files, migration, duplicates), and the rows a report becomes."""

import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pytest_xfperf.baselines import pooling
from pytest_xfperf.history import db as history_db
from pytest_xfperf.history.db import CaseRow, History, HistoryError, RunRow
from pytest_xfperf.history.drift import finding
from pytest_xfperf.history.record import case_row
from pytest_xfperf.history.trend import TrendPolicy, assess, change_point


def noisy(n: int, seed: int, sigma: float = 0.02) -> np.ndarray:
    return np.exp(np.random.default_rng(seed).normal(0.0, sigma, n))


@pytest.mark.parametrize("seed", range(20))
def test_a_series_without_change_is_not_drifting(seed):
    levels = noisy(30, seed)
    trend = assess(levels, levels * noisy(30, seed + 100, 0.01))
    assert trend is not None and not trend.drifting and not trend.faster


def test_a_lasting_ten_percent_step_is_drifting_and_dated_where_it_starts():
    levels = noisy(30, 1)
    levels[18:] *= 1.10
    trend = assess(levels, levels)
    assert trend is not None and trend.drifting
    assert trend.binding.split == 18
    assert trend.binding.shift == pytest.approx(1.10, abs=0.02)
    assert trend.binding.p_value <= 0.01


def test_a_drift_of_one_and_a_half_percent_a_run_from_run_10_is_flagged_by_run_20():
    levels = noisy(30, 2)
    levels[10:] *= 1.015 ** np.arange(1, 21)
    flagged = next(n for n in range(10, 31)
                   if (t := assess(levels[:n], None)) is not None and t.drifting)
    assert flagged <= 20


def test_one_slow_run_is_an_outlier_not_a_drift():
    levels = noisy(30, 3)
    levels[-1] *= 2.0
    levels[12] *= 3.0
    trend = assess(levels, levels)
    assert trend is not None and not trend.drifting


def test_a_change_the_host_made_alone_does_not_count():
    # Own times 20 % slower from run 15 on, the yardstick slower with them: the normalized
    # view shows nothing, so nothing is shown.
    own = noisy(30, 4)
    own[15:] *= 1.2
    normalized = noisy(30, 5, 0.01)
    trend = assess(own, normalized)
    assert trend is not None and not trend.drifting
    assert assess(own, None).drifting  # the own view alone does show it


def test_a_lasting_speed_up_is_reported_faster_never_drifting():
    levels = noisy(30, 6)
    levels[20:] /= 1.2
    trend = assess(levels, levels)
    assert trend is not None and trend.faster and not trend.drifting


def test_a_step_smaller_than_min_shift_is_not_drifting_however_certain():
    levels = noisy(30, 7, 0.002)
    levels[15:] *= 1.03
    trend = assess(levels, None)
    assert trend.binding.p_value is None and not trend.drifting  # too small to be tested
    smaller = assess(levels, None, TrendPolicy(min_shift=0.02))
    assert smaller.drifting and smaller.binding.p_value <= 0.01


def test_too_short_a_series_has_no_finding_and_constant_ones_none_significant():
    assert change_point([1.0] * 9) is None
    assert assess([1.0] * 9, None) is None
    flat = change_point([1.0] * 12, TrendPolicy(min_shift=0.0))
    assert flat is not None and flat.shift == 1.0 and flat.p_value is None  # no split at all
    assert not assess([1.0] * 12, None).drifting


def test_the_window_keeps_only_the_last_runs():
    levels = noisy(60, 8)
    levels[:20] *= 1.3  # an old change, out of the window
    trend = assess(levels, None, TrendPolicy(window=30))
    assert trend.binding.runs == 30 and not trend.drifting


# -- the store ---------------------------------------------------------------------------

def run_row(key: str = "cpu-test", digest: str | None = None) -> RunRow:
    return RunRow(started="2026-12-01T00:00:00Z", machine_key=key, machine={"key": key},
                  git_commit="abc", git_branch="main", versions={"torch": "2"}, settings={},
                  source="test", digest=digest)


def row(case_id: str, own: float, seconds: float = 1.0) -> CaseRow:
    return CaseRow(case_id=case_id, verdict="pass", timing_metric="p50_ms",
                   metrics={"p50_ms": own},
                   summary={"p50_ms": {"own": own, "clock": "wall", "blocks": 8}},
                   seconds=seconds)


def test_runs_are_appended_and_read_back_as_series_oldest_first(tmp_path: Path):
    path = tmp_path / "h" / "history.db"
    with History(path) as db:
        for i in range(5):
            db.append(run_row(), [row("a", 1.0 + i, seconds=i + 1), row("b", 2.0)])
        db.append(run_row("cpu-other"), [row("a", 9.0)])
        assert db.count() == (6, 11)
        series = db.series("a", "cpu-test")
        assert [p.metrics["p50_ms"] for p in series] == [1.0, 2.0, 3.0, 4.0, 5.0]
        assert [p.metrics["p50_ms"] for p in db.series("a", "cpu-test", limit=2)] == [4.0, 5.0]
        assert db.machines_of("a") == ["cpu-other", "cpu-test"]
        assert db.case_ids("a*") == ["a"]
        assert db.costs()["a"] == 3.0
    header = path.read_bytes()[:100]
    assert int.from_bytes(header[68:72], "big") == history_db.APPLICATION_ID
    assert int.from_bytes(header[60:64], "big") == history_db.SCHEMA


def test_an_imported_report_is_added_once(tmp_path: Path):
    with History(tmp_path / "h.db") as db:
        assert db.append(run_row(digest="d1"), [row("a", 1.0)]) == 1
        assert db.append(run_row(digest="d1"), [row("a", 1.0)]) is None
        assert db.count() == (1, 1)


def test_a_file_that_is_not_sqlite_is_refused_and_left_as_it_was(tmp_path: Path):
    path = tmp_path / "history.db"
    path.write_bytes(b"not a database at all" * 20)
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="not an SQLite database.*left as it is"):
        History(path)
    assert path.read_bytes() == before


def test_another_applications_sqlite_file_is_refused_and_left_as_it_was(tmp_path: Path):
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as other:
        other.execute("CREATE TABLE notes (text TEXT)")
        other.execute("INSERT INTO notes VALUES ('keep me')")
    other.close()
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="another application"):
        History(path)
    assert path.read_bytes() == before


def test_a_newer_schema_is_refused_with_the_fix(tmp_path: Path, monkeypatch):
    path = tmp_path / "h.db"
    History(path).close()
    monkeypatch.setattr(history_db, "SCHEMA", 0)  # this version predates the file's schema
    with pytest.raises(HistoryError, match="newer pytest-xfperf.*upgrade"):
        History(path)


def test_an_older_schema_is_migrated_in_place_keeping_its_rows(tmp_path: Path, monkeypatch):
    path = tmp_path / "h.db"
    with History(path) as db:
        db.append(run_row(), [row("a", 1.0)])
    # A next schema adding a column: the file is taken from 1 to 2 when next opened.
    monkeypatch.setattr(history_db, "SCHEMA", 2)
    monkeypatch.setattr(history_db, "MIGRATIONS", [
        *history_db.MIGRATIONS, ("ALTER TABLE runs ADD COLUMN note TEXT",)])
    with History(path) as db:
        assert [p.metrics["p50_ms"] for p in db.series("a", "cpu-test")] == [1.0]
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA user_version").fetchone()[0] == 2
        assert "note" in [c[1] for c in raw.execute("PRAGMA table_info(runs)")]
    raw.close()


def test_a_missing_file_is_an_error_where_reading_only(tmp_path: Path):
    with pytest.raises(HistoryError, match="no such history file"):
        History(tmp_path / "absent.db", create=False)


# -- rows and findings ---------------------------------------------------------------------

def report_case(case_ms: list[float], yardstick_ms: list[float]) -> dict:
    return {"id": "m/ort-cpu/fp32/b1s8", "model": "m", "backend": "ort-cpu",
            "precision": "fp32", "batch": 1, "seq": 8, "verdict": "pass",
            "stats": {"rounds": 10, "mean_ms": 1.1, "stdev_ms": 0.1, "min_ms": 0.9,
                      "max_ms": 2.0, "p50_ms": 1.0, "p90_ms": 1.5, "p95_ms": 1.8,
                      "p99_ms": 2.0, "mad_ms": 0.05, "cv": 0.1, "throughput": 1000.0},
            "timing": {"clock": "wall", "case_ms": case_ms, "yardstick": "y1",
                       "yardstick_ms": yardstick_ms}, "seconds": 3.5}


def test_a_report_case_becomes_a_row_with_both_views_of_each_block_metric():
    made = case_row(report_case([1.0, 2.0, 3.0], [1.0, 1.0, 2.0]))
    assert made.summary["p50_ms"]["own"] == 2.0
    assert made.summary["p50_ms"]["normalized"] == 1.5
    assert made.summary["p50_ms"]["yardstick"] == "y1"
    assert made.metrics["p50_ms"] == 1.0 and made.seconds == 3.5
    json.dumps(made.summary)  # stored as JSON


def test_a_finding_names_the_run_where_the_change_starts(tmp_path: Path):
    with History(tmp_path / "h.db") as db:
        for i in range(20):
            level = 1.0 if i < 12 else 1.25
            case = report_case([level] * 8, [1.0] * 8)
            db.append(run_row(), [case_row(case)])
        points = db.series("m/ort-cpu/fp32/b1s8", "cpu-test")
    current = case_row(report_case([1.25] * 8, [1.0] * 8)).summary
    found = finding(points, current, "p50_ms")
    assert found is not None and found["drifting"]
    assert found["since_run"] == 13 and found["shift"] == pytest.approx(1.25)
    # A run on another yardstick is compared on its own times only.
    other = case_row(report_case([1.25] * 8, [1.0] * 8)).summary
    other["p50_ms"]["yardstick"] = "y2"
    assert len(finding(points, other, "p50_ms")["views"]) == 1


SHIPPED = Path(__file__).parents[2] / "baselines" / "cpu-amd-epyc-2c-9a2dc94c.json"


def one_process_copy(tmp_path: Path) -> Path:
    """The shipped baseline with its pooled records read as one process's blocks: the
    spreads it yields are the two-process figures, unscaled."""
    baseline = json.loads(SHIPPED.read_text())
    for entry in baseline["cases"].values():
        for record in (entry.get("timing"), entry.get("speedup")):
            if isinstance(record, dict):
                record.pop("processes", None)
    path = tmp_path / "one_process.json"
    path.write_text(json.dumps(baseline))
    return path


def gated_row(case_id: str, then: dict, case_scale: float, yardstick_scale: float,
              verdict: str = "pass") -> CaseRow:
    """A run whose blocks are the baseline's scaled: its own shift is ``case_scale``, its
    normalized one ``case_scale / yardstick_scale``, exactly (Hodges-Lehmann of a shifted
    copy)."""
    record = {"clock": "wall", "yardstick": then["yardstick"],
              "case_ms": [v * case_scale for v in then["case_ms"]],
              "yardstick_ms": [v * yardstick_scale for v in then["yardstick_ms"]]}
    return CaseRow(case_id=case_id, verdict=verdict, timing_metric="p50_ms",
                   metrics={"p50_ms": 1.0}, summary={"p50_ms": record}, seconds=1.0)


def test_history_spreads_are_the_rms_of_unchanged_runs_against_the_baseline(tmp_path: Path):
    import io
    import math

    from pytest_xfperf import cli

    baseline = json.loads(SHIPPED.read_text())
    case_id = "minilm-l6/ort-cpu/fp32/b1s128"
    then = baseline["cases"][case_id]["timing"]
    key = baseline["machine"]["key"]
    path = tmp_path / "history.db"
    with History(path) as db:
        db.append(run_row(key), [gated_row(case_id, then, 1.1, 1.1)])  # host 10 % slower
        db.append(run_row(key), [gated_row(case_id, then, 1 / 1.1, 1.0)])  # case 10 % faster
        # Not A/A trials: the run that recorded, and another machine's run.
        db.append(run_row(key), [gated_row(case_id, then, 2.0, 1.0, verdict="recorded")])
        db.append(run_row("cpu-other"), [gated_row(case_id, then, 3.0, 1.0)])
    step = math.log(1.1)
    own, normalized = step, math.sqrt(step**2 / 2)
    out = io.StringIO()
    assert cli.main(["history", "spreads", "--history", str(path),
                     "--baseline", str(one_process_copy(tmp_path))], out) == 0
    assert f"{case_id}: 2, wall_normalized {normalized:.3f}, wall_own {own:.3f}" in (
        out.getvalue())
    assert (f"[tool.xfperf] spreads = {{ wall_normalized = {normalized:.3f}, "
            f"wall_own = {own:.3f} }}") in out.getvalue()
    # The shipped file pools several processes: a shift against it moves less than one
    # between two single processes, and the report scales it back to what the spreads mean.
    processes = pooling.processes_of(then)
    assert processes > 1
    scale = 1 / pooling.spread_factor(processes)
    out = io.StringIO()
    assert cli.main(["history", "spreads", "--history", str(path), "--baseline", str(SHIPPED)],
                    out) == 0
    assert (f"{case_id}: 2, wall_normalized {normalized * scale:.3f}, "
            f"wall_own {own * scale:.3f}") in out.getvalue()


def test_history_spreads_are_set_beside_the_ones_the_project_gates_with(
        tmp_path: Path, monkeypatch):
    """Where pyproject.toml's [tool.xfperf] sets spreads, the report shows them and says when
    the runs moved more than the gate allows for."""
    import io

    from pytest_xfperf import cli

    baseline = json.loads(SHIPPED.read_text())
    case_id = "minilm-l6/ort-cpu/fp32/b1s128"
    then = baseline["cases"][case_id]["timing"]
    path = tmp_path / "history.db"
    with History(path) as db:
        for _ in range(12):  # 0.095 either view, 12 times
            db.append(run_row(baseline["machine"]["key"]), [gated_row(case_id, then, 1.1, 1.0)])
    (tmp_path / "pyproject.toml").write_text(
        "[tool.xfperf]\nspreads = { wall_own = 0.2, wall_normalized = 0.05 }\n")
    monkeypatch.chdir(tmp_path)
    out = io.StringIO()
    assert cli.main(["history", "spreads", "--history", str(path),
                     "--baseline", str(one_process_copy(tmp_path))], out) == 0
    lines = out.getvalue().splitlines()
    # 12 trials of rms 0.095 leave the spread within 0.068 .. 0.158 (chi-square, 95 %).
    assert ("wall_normalized: 0.095 over 12 trials (95 % 0.068 .. 0.158; default 0.03; "
            "[tool.xfperf] here 0.05): above the 0.05 this project's gate uses") in (
        "\n".join(lines))
    [own] = [line for line in lines if line.startswith("wall_own:")]
    assert own == ("wall_own: 0.095 over 12 trials (95 % 0.068 .. 0.158; default 0.15; "
                   "[tool.xfperf] here 0.2)")  # within the setting: nothing flagged


def test_the_spreads_interval_follows_the_chi_square_quantiles():
    from pytest_xfperf.history.spreads import rms_interval

    # chi-square quantiles, 24 degrees of freedom: 12.401 and 39.364.
    low, high = rms_interval(0.1, 24)
    assert low == pytest.approx(0.1 * math.sqrt(24 / 39.364), rel=0.005)
    assert high == pytest.approx(0.1 * math.sqrt(24 / 12.401), rel=0.005)
    assert rms_interval(0.1, 2)[1] > 0.3  # two trials tell little


def test_history_spreads_read_a_generations_ttft_as_its_own_spread(tmp_path: Path):
    """A GPU generation's TPOT is a captured replay (device_own) and its TTFT a prefill
    (device_prefill): both are A/A trials, each under its own spread, by the run's pacing."""
    import math

    from pytest_xfperf.history.spreads import trials

    case_id = "gpt2-tiny/torch-cuda-graph/fp16/b1p32n8"
    steps, prefill = [0.2, 0.21, 0.19, 0.2], [0.5, 0.52, 0.49, 0.5]
    baseline = {"machine": {"key": "gpu-x"}, "cases": {case_id: {
        "timing": {"clock": "device", "case_ms": steps, "pacing": "captured"},
        "more_timing": {"ttft_ms": {"clock": "device", "case_ms": prefill,
                                    "pacing": "prefill"}}}}}

    def run(tpot: float, ttft: float) -> CaseRow:
        summary = {"tpot_ms": {"clock": "device", "pacing": "captured",
                               "case_ms": [v * tpot for v in steps]},
                   "ttft_ms": {"clock": "device", "pacing": "prefill",
                               "case_ms": [v * ttft for v in prefill]}}
        return CaseRow(case_id=case_id, verdict="pass", timing_metric="tpot_ms",
                       metrics={"tpot_ms": 0.2}, summary=summary, seconds=1.0)

    with History(tmp_path / "history.db") as db:
        db.append(run_row("gpu-x"), [run(1.01, 1.05)])
        found = trials(db, baseline)
    assert len(found) == 1
    ratios = found[0].ratios
    assert set(ratios) == {"device_own", "device_prefill"}
    assert math.log(ratios["device_own"][0]) == pytest.approx(math.log(1.01), abs=1e-6)
    assert math.log(ratios["device_prefill"][0]) == pytest.approx(math.log(1.05), abs=1e-6)


def test_history_spreads_without_compared_runs_say_what_to_do(tmp_path: Path, capsys):
    from pytest_xfperf import cli

    path = tmp_path / "history.db"
    with History(path) as db:
        db.append(run_row("cpu-other"), [row("minilm-l6/ort-cpu/fp32/b1s128", 1.0)])
    assert cli.main(["history", "spreads", "--history", str(path),
                     "--baseline", str(SHIPPED)]) == 2
    message = capsys.readouterr().err
    assert "no run of a case of" in message and "run the suite against" in message


def test_each_view_stands_for_the_spread_its_clock_and_pacing_take():
    from pytest_xfperf.baselines.rule import DEFAULT_POLICY

    spread_name = DEFAULT_POLICY.spread_name
    names = {spread_name("wall", False, ""), spread_name("wall", True, ""),
             spread_name("device", False, "captured"), spread_name("device", True, "captured"),
             spread_name("device", True, "prefill"), spread_name("device", False, "launched"),
             spread_name("wall", False, "torch"), spread_name("wall", True, "torch"),
             spread_name("device", True, "eager"), spread_name("device", False, "device")}
    assert names == {"wall_own", "wall_normalized", "device_own", "device_normalized",
                     "device_prefill", "device_launched", "wall_torch_own",
                     "wall_torch_normalized", "device_eager_normalized", "device_eager_work"}
    assert spread_name("device", False, "eager") == "device_launched"
    assert spread_name("wall", True, "onnxruntime") == "wall_normalized"
    # Each is a knob of the policy, as [tool.xfperf] spreads names it; a record that does
    # not say what paces it takes the widest, as in the gate.
    assert all(hasattr(DEFAULT_POLICY, f"spread_{name}") for name in names)
    assert spread_name("device", False, "") == "device_launched"
