"""``python -m pytest_xfperf``: baselines show / diff / prune, and report from a JSON report."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_xfperf.baselines import store
from pytest_xfperf.baselines.machine import machine_info
from pytest_xfperf.cli import main

MACHINE = {"key": "cpu-test-2c"}


def entry(p50: float, recorded: str = "2026-11-20T10:00:00Z", torch: str = "2.13.0") -> dict:
    return {"metrics": {"p50_ms": p50, "throughput": 1000 / p50, "cosine": 0.9995},
            "samples_ms": [p50] * 12, "versions": {"torch": torch}, "recorded": recorded,
            "noise": {"robust_cv": 0.031, "cv": 0.05}}


def write(path: Path, cases: dict) -> Path:
    store.merge_and_write(path, cases, MACHINE)
    return path


def cli(*args: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(args), out), out.getvalue()


def test_show_lists_cases_with_figures(tmp_path: Path):
    record = {"clock": "wall", "case_ms": [20.0] * 10, "yardstick_ms": [2.0] * 10,
              "yardstick": "mlp1"}
    path = write(tmp_path / "a.json", {"m/ort-cpu/fp32/b1s128": {**entry(20.0),
                                                                 "timing": record},
                                       "m/torch-cpu/fp32/b1s128": entry(40.0)})
    code, text = cli("baselines", "show", str(path))
    assert code == 0
    assert f"schema {store.SCHEMA}, 2 case(s)" in text and "machine: key=cpu-test-2c" in text
    line = next(x for x in text.splitlines() if x.startswith("m/ort-cpu"))
    assert "20.000" in line and "50.0" in line and "0.99950" in line and "3.1%" in line
    assert "2026-11-20" in line and "10 blocks" in line
    assert "blocks" not in next(x for x in text.splitlines() if x.startswith("m/torch-cpu"))
    code, text = cli("baselines", "show", str(path), "--case", "*torch*")
    assert "1 shown" in text and "m/ort-cpu" not in text


def test_show_says_how_many_processes_a_pooled_record_joins():
    shipped = Path(__file__).parents[2] / "baselines" / "cpu-amd-epyc-2c-9a2dc94c.json"
    code, text = cli("baselines", "show", str(shipped))
    assert code == 0
    line = next(x for x in text.splitlines()
                if x.startswith("minilm-l6/ort-cpu/int8-dynamic/b1s128"))
    assert "36 blocks of 3 processes" in line  # the shipped suite's file pools three


def test_diff_shows_relative_changes_versions_and_one_sided_cases(tmp_path: Path):
    old = write(tmp_path / "old.json", {"m/a/fp32/b1s8": entry(10.0), "m/gone/fp32/b1s8":
                                        entry(5.0)})
    new = write(tmp_path / "new.json", {"m/a/fp32/b1s8": entry(12.0, torch="2.14.0"),
                                        "m/new/fp32/b1s8": entry(5.0)})
    code, text = cli("baselines", "diff", str(old), str(new))
    assert code == 0
    line = next(x for x in text.splitlines() if x.startswith("m/a/fp32"))
    assert "+20.0%" in line and "-16.7%" in line and "torch 2.13.0->2.14.0" in line
    assert f"only in {old}: m/gone/fp32/b1s8" in text
    assert f"only in {new}: m/new/fp32/b1s8" in text


def test_prune_by_glob_age_and_report_and_dry_run(tmp_path: Path):
    path = write(tmp_path / "b.json", {
        "m/a/fp32/b1s8": entry(1.0, recorded="2020-01-01T00:00:00Z"),
        "m/b/fp32/b1s8": entry(1.0, recorded="2099-01-01T00:00:00Z"),
        "m/c/fp32/b1s8": entry(1.0, recorded="2020-01-01T00:00:00Z"),
    })
    before = path.read_bytes()
    code, text = cli("baselines", "prune", str(path), "--older-than", "30", "--dry-run")
    assert code == 0 and "would remove 2 of 3" in text and path.read_bytes() == before
    report = tmp_path / "report.json"
    report.write_text(json.dumps({"cases": [{"id": "m/c/fp32/b1s8"}]}))
    code, text = cli("baselines", "prune", str(path), "--older-than", "30", "--not-in",
                     str(report))
    assert code == 0 and "removed 1 of 3" in text and "m/a/fp32/b1s8" in text
    assert set(store.load(path)["cases"]) == {"m/b/fp32/b1s8", "m/c/fp32/b1s8"}
    code, text = cli("baselines", "prune", str(path), "--case", "m/b/*")
    assert set(store.load(path)["cases"]) == {"m/c/fp32/b1s8"}


def test_prune_needs_a_criterion_and_bad_files_are_clear_errors(tmp_path: Path, capsys):
    path = write(tmp_path / "b.json", {"m/a/fp32/b1s8": entry(1.0)})
    assert cli("baselines", "prune", str(path))[0] == 2
    assert "prune needs a criterion" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{ not json")
    assert cli("baselines", "show", str(corrupt))[0] == 2
    err = capsys.readouterr().err
    assert "corrupt.json is unusable: not valid JSON" in err and "left untouched" in err
    assert corrupt.read_text() == "{ not json"
    assert cli("baselines", "prune", str(corrupt), "--case", "*")[0] == 2
    assert corrupt.read_text() == "{ not json"
    assert cli("baselines", "diff", str(path), str(tmp_path / "missing.json"))[0] == 2
    assert "missing.json: no such baseline file" in capsys.readouterr().err
    assert cli("report", str(path), "--markdown", str(tmp_path / "r.md"))[0] == 2
    assert "not a readable xfperf JSON report" in capsys.readouterr().err


def test_module_entry_point_runs_without_ml_imports(tmp_path: Path):
    path = write(tmp_path / "a.json", {"m/a/fp32/b1s8": entry(3.0)})
    code = (f"import sys, runpy; sys.argv = ['x', 'baselines', 'show', {str(path)!r}]\n"
            "try:\n    runpy.run_module('pytest_xfperf', run_name='__main__')\n"
            "except SystemExit as e:\n    assert e.code == 0, e.code\n"
            "assert 'torch' not in sys.modules and 'onnxruntime' not in sys.modules\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert "m/a/fp32/b1s8" in done.stdout


def test_a_reader_that_stops_early_gets_no_traceback(tmp_path: Path):
    # Enough rows to overflow a pipe's buffer, so the command is still writing when the
    # reader (as `| head -1` does) closes its end.
    path = write(tmp_path / "a.json", {f"m/b{i}/fp32/b1s8": entry(3.0) for i in range(3000)})
    child = subprocess.Popen([sys.executable, "-m", "pytest_xfperf", "baselines", "show",
                              str(path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert child.stdout is not None and child.stderr is not None
    assert b"3000 case(s)" in child.stdout.readline()
    child.stdout.close()
    error = child.stderr.read().decode()
    assert child.wait(timeout=60) == 128 + 13  # what a shell tool killed by SIGPIPE returns
    assert "Traceback" not in error and "BrokenPipeError" not in error, error


@pytest.mark.parametrize("argv", [[], ["baselines"], ["baselines", "show"], ["nope"]])
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2


def test_show_says_an_older_schema_and_a_fingerprint_that_gates_no_machine(tmp_path: Path):
    old = tmp_path / "old.json"
    old.write_text(json.dumps({"schema": 2, "machine": {"key": "gpu-h100-x1-cpu-xeon-16c",
                                                        "cores": 16},
                               "cases": {"m/ort-cuda/fp16/b1s128": entry(1.0)}}))
    before = old.read_bytes()
    code, text = cli("baselines", "show", str(old))
    assert code == 0 and old.read_bytes() == before
    assert f"schema 2, read as {store.SCHEMA} (the file is unchanged" in text
    assert "lacks cpu_vendor, cpu_family, cpu_model, cpu_name, isa, memory_gb" in text
    assert "gates no machine" in text
    current = tmp_path / "current.json"
    store.merge_and_write(current, {"m/ort-cpu/fp32/b1s128": entry(2.0)}, machine_info())
    code, text = cli("baselines", "show", str(current))
    assert f"schema {store.SCHEMA}, 1 case(s)" in text and "lacks" not in text
