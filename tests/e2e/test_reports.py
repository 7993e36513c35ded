"""Reports from a real run: Markdown, GitHub step summary, HTML, plots, JUnit properties,
pytest-benchmark's compare on our --benchmark-json, the report CLI, and outputs that cannot
be written leaving the verdict alone."""

import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

from .conftest import run_both as run

CASE = "stack/torch-cpu/fp32/b8s64"
ORT = "stack/ort-cpu/fp32/b8s64"




def test_every_report_of_a_regressed_run(project: pytest.Pytester, monkeypatch):
    run(project, "--xfperf-update-baselines").assert_outcomes(passed=2)
    summary = project.path / "step-summary.md"
    summary.write_text("## earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = run(project, "-v", "--xfperf-markdown", "out/report.md", "--xfperf-html",
                 "out/report.html", "--xfperf-plots", "out/plots", "--xfperf-report",
                 "out/report.json", "--xfperf-prices", "cpu-amd-epyc-2c=0.5,"
                 "cpu-other-4c=1", "--junitxml", "out/junit.xml", "--benchmark-json",
                 "bench.json", depth=24)
    assert result.ret == 1  # 12x the layers: both cases regress; reports do not change that
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*xfperf: Markdown report written to out/report.md*",
                                 "*xfperf: Markdown report appended to $GITHUB_STEP_SUMMARY*",
                                 "*xfperf: HTML report written to out/report.html*",
                                 "*xfperf: reports generated in * s*"])
    md = (project.path / "out/report.md").read_text()
    assert md.index("## Failures") < md.index("## stack b8s64")
    assert f"`{CASE}` **REGRESSED**" in md and "% slower" in md
    assert "## Recommendations" in md and "![latency of stack b8s64](plots/" in md
    assert summary.read_text().startswith("## earlier step\n# pytest-xfperf report")
    plots = sorted(p.name for p in (project.path / "out/plots").iterdir())
    assert "latency_stack_b8s64.png" in plots
    assert f"samples_{CASE.replace('/', '_')}.png" in plots  # now vs baseline samples
    page = (project.path / "out/report.html").read_text()
    assert page.count("data:image/png;base64,") == len(plots)
    # JUnit XML: each case's figures as properties
    tree = ET.parse(project.path / "out/junit.xml")
    props = {(case.get("name"), p.get("name")): p.get("value")
             for case in tree.iter("testcase") for p in case.iter("property")}
    name = f"test_inference[{CASE}]"
    assert props[(name, "xfperf_verdict")] == "REGRESSED"
    assert float(props[(name, "xfperf_p50_ms")]) > 0
    assert float(props[(name, "xfperf_p50_ms_vs_baseline")]) > 0.5
    # pytest-benchmark's own compare reads our --benchmark-json
    compare = shutil.which("pytest-benchmark") or shutil.which("py.test-benchmark")
    assert compare, "pytest-benchmark's CLI is installed with it"
    done = subprocess.run([compare, "compare", str(project.path / "bench.json")],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert CASE in done.stdout and ORT in done.stdout
    # the same reports from the saved JSON report, without running anything
    done = subprocess.run([sys.executable, "-m", "pytest_xfperf", "report",
                           str(project.path / "out/report.json"), "--markdown",
                           str(project.path / "again.md"), "--price-per-hour", "2"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    again = (project.path / "again.md").read_text()
    assert f"`{CASE}` **REGRESSED**" in again and "$/hour" in again


def test_progress_is_announced_in_verbose_mode(project: pytest.Pytester):
    result = run(project, "-v", "--xfperf-backends", "ort-cpu")
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*xfperf: {ORT}: building export (fp32, cpu)...*[[]*s[]]",
                                 f"*xfperf: {ORT}: built export in * s*"])
    quiet = run(project, "--xfperf-backends", "ort-cpu", "--xfperf-clear-cache")
    assert "building export" not in quiet.stdout.str()


def test_unwritable_report_paths_leave_the_verdict_alone(project: pytest.Pytester):
    (project.path / "blocker").write_text("a file, not a directory")
    result = run(project, "--xfperf-markdown", "blocker/r.md", "--xfperf-html", "blocker/r.html",
                 "--xfperf-plots", "blocker/plots")
    assert result.ret == 0
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*could not write the plots to blocker/plots*",
                                 "*could not write the Markdown report blocker/r.md*",
                                 "*could not write the HTML report blocker/r.html*"])


def test_missing_matplotlib_is_a_message(project: pytest.Pytester):
    # Stands in for an environment without matplotlib (it is installed here): the import
    # system treats a None entry as "not installed".
    project.makeconftest(project.path.joinpath("conftest.py").read_text()
                         + "\nimport sys\nsys.modules['matplotlib'] = None\n")
    result = run(project, "--xfperf-plots", "plots", "--xfperf-markdown", "r.md")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["*plots skipped: matplotlib is not installed: pip install "
                                 "'pytest-xfperf[[]report[]]'*"])
    assert (project.path / "r.md").is_file()
