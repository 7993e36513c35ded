"""The run history, shards and merge through real pytest runs of a user-registered model: two
shards and a merge hold the unsharded run's cases (xdist inside a shard, history rows under
xdist); a case whose history steps up is drifting, and fails with --xfperf-fail-on-drift; and
the bad inputs of this part (a shard that cannot exist, a history file that is not ours)."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

from .conftest import FAST, read_json

MATRIX = ["--xfperf-models", "stack,transient", "--xfperf-backends", "torch-cpu,ort-cpu",
          "--xfperf-shapes", "8x64,1x16"]


def cli(project: pytest.Pytester, *args: str) -> pytest.RunResult:
    return project.run(sys.executable, "-m", "pytest_xfperf", *args)


def ids(report: Path) -> set[str]:
    return {c["id"] for c in read_json(report)["cases"]}


def history_rows(path: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(path) as db:
        rows = list(db.execute("SELECT run_id, case_id FROM results ORDER BY id"))
    db.close()
    return rows


def test_two_shards_and_a_merge_hold_the_unsharded_runs_cases(project: pytest.Pytester):
    whole = project.runpytest_subprocess("--xfperf", *FAST, *MATRIX,
                                         "--xfperf-update-baselines", "--xfperf-report",
                                         "all.json")
    whole.assert_outcomes(passed=8)
    history = project.path / ".xfperf" / "history.db"
    assert sorted(case for _, case in history_rows(history)) == sorted(ids(
        project.path / "all.json"))
    assert all(entry["seconds"] > 0 for entry in read_json(next(
        (project.path / "baselines").glob("*.json")))["cases"].values())

    shards = []
    for k, xdist in ((1, ["-n", "2"]), (2, [])):
        run = project.runpytest_subprocess("--xfperf", *FAST, *MATRIX, *xdist,
                                           "--xfperf-shard", f"{k}/2", "--xfperf-report",
                                           f"s{k}.json")
        # Verdicts are not this test's subject: on two cores, xdist workers build while
        # another times, and a tiny case can read far slower than its sequential baseline.
        assert run.ret in (0, 1), run.stdout.str()
        run.stdout.fnmatch_lines([f"shard {k}/2: * of 8 case(s), recorded cost *costs from "
                                  "baselines*"])
        shards.append(project.path / f"s{k}.json")
    # Under xdist the controller appended the shard's run once, with every worker's cases.
    assert sorted(case for run_id, case in history_rows(history) if run_id == 2) == sorted(
        ids(shards[0]))
    first, second = ids(shards[0]), ids(shards[1])
    assert first and second and not first & second
    assert first | second == ids(project.path / "all.json")
    infos = [read_json(s)["shard"] for s in shards]
    assert infos[0]["partition"] == infos[1]["partition"]
    # Cases of one model and shape share artifacts: kept together where that balances.
    assert len(history_rows(history)) == 16

    merged = cli(project, "report", "merge", *map(str, shards), "--markdown", "merged.md",
                 "--html", "merged.html")
    failed = any(c["verdict"].isupper() for s in shards for c in read_json(s)["cases"])
    assert merged.ret == (1 if failed else 0), merged.stderr.str()
    merged.stdout.fnmatch_lines([f"xfperf merged: {'FAILED' if failed else 'passed'}: 2 "
                                 "report(s), 1 machine(s), 8 case(s)*"])
    text = (project.path / "merged.md").read_text()
    assert all(f"| {case_id} |" in text for case_id in first | second)
    missing = cli(project, "report", "merge", str(shards[0]))
    assert missing.ret == 2
    missing.stderr.fnmatch_lines(["*shard(s) 2/2 missing*"])

    shown = cli(project, "history", "show", "stack/torch-cpu/fp32/b8s64", "--plot",
                "series.png")
    assert shown.ret == 0, shown.stderr.str()
    shown.stdout.fnmatch_lines(["stack/torch-cpu/fp32/b8s64 on *: 2 run(s), p50_ms*",
                                "drift test: too few comparable runs*",
                                "plot written to series.png"])
    assert (project.path / "series.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_history_that_steps_up_is_drifting_and_fails_with_the_flag(project: pytest.Pytester):
    """The series before the last runs is made from this machine's first real run: its report
    is imported again with the case's blocks scaled (ten as recorded, five 1.6x slower), then
    the model is run at four times its depth, as the step's next runs."""
    args = ["--xfperf", *FAST, "--xfperf-backends", "torch-cpu"]
    first = project.runpytest_subprocess(*args, "--xfperf-report", "first.json")
    first.assert_outcomes(passed=1)
    report = read_json(project.path / "first.json")
    copies = []
    for i, factor in enumerate([1.0] * 10 + [1.6] * 5):
        copy = json.loads(json.dumps(report))
        copy["created"] = f"2026-11-{i + 1:02d}T00:00:00Z"
        timing = copy["cases"][0]["timing"]
        timing["case_ms"] = [x * factor for x in timing["case_ms"]]
        path = project.path / f"copy{i:02d}.json"
        path.write_text(json.dumps(copy))
        copies.append(str(path))
    assert cli(project, "history", "import", *copies).ret == 0

    shown = _deeper(project, args, "--xfperf-report", "drift.json")
    assert shown.ret == 0  # reported, not failed, by default
    case = read_json(project.path / "drift.json")["cases"][0]
    assert case["verdict"] == "drifting"
    (found,) = case["trend"]
    assert found["drifting"] and found["shift"] > 1.3 and found["since_run"] == 12
    shown.stdout.fnmatch_lines(["*stack/torch-cpu/fp32/b8s64: p50_ms drifting: +*% from run 12*"])

    failed = _deeper(project, args, "--xfperf-fail-on-drift")
    assert failed.ret == 1
    failed.stdout.fnmatch_lines(["*stack/torch-cpu/fp32/b8s64: DRIFTING",
                                 "*history: p50_ms drifting*from run 12*"])


def _deeper(project: pytest.Pytester, args: list[str], *more: str) -> pytest.RunResult:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACK_DEPTH", "8")
        return project.runpytest_subprocess(*args, *more)


@pytest.mark.parametrize("spec, message", [
    ("0/4", "*shard '0/4' does not exist*numbered from 1*"),
    ("5/4", "*shard '5/4' does not exist*"),
    ("a/b", "*malformed shard 'a/b'*K/N*"),
])
def test_a_shard_that_cannot_exist_is_a_usage_error(project: pytest.Pytester, spec, message):
    result = project.runpytest_subprocess("--xfperf", "--xfperf-shard", spec)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])


@pytest.mark.parametrize("content", [b"plain text, not a database" * 10, None])
def test_a_history_file_that_is_not_ours_stops_the_run_untouched(project: pytest.Pytester,
                                                                  content):
    path = project.path / ".xfperf" / "history.db"
    path.parent.mkdir()
    if content is None:  # another application's SQLite database
        with sqlite3.connect(path) as other:
            other.execute("CREATE TABLE mine (x)")
        other.close()
    else:
        path.write_bytes(content)
    before = path.read_bytes()
    result = project.runpytest_subprocess("--xfperf", *FAST)
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*history.db*not an*history*left as it is*"])
    assert path.read_bytes() == before
    off = project.runpytest_subprocess("--xfperf", *FAST, "--xfperf-history", "off",
                                       "--benchmark-disable")
    assert off.ret == 0


def test_memory_measured_another_way_is_not_compared(project: pytest.Pytester):
    """A baseline whose host memory was measured in another mode (before the heap trim, say)
    is gated on everything else, and the run says why memory was left out."""
    args = ["--xfperf", *FAST, "--xfperf-history", "off"]
    project.runpytest_subprocess(*args, "--xfperf-update-baselines").assert_outcomes(passed=1)
    path = next((project.path / "baselines").glob("*.json"))
    document = read_json(path)
    (entry,) = document["cases"].values()
    assert entry["memory_mode"].startswith("per-case peak RSS")
    entry["memory_mode"] = "process lifetime peak RSS"
    path.write_text(json.dumps(document))
    result = project.runpytest_subprocess(*args)
    result.stdout.fnmatch_lines(["*host memory not compared where the baseline measured it "
                                 "another way (process lifetime peak RSS; now per-case*"])
