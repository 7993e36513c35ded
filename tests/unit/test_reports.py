"""Reports from results: tables, cost, recommendations, Markdown, HTML, plots, and the
messages (never exceptions) of outputs that cannot be written."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pytest_xfperf.baselines.gate import GateOutcome
from pytest_xfperf.matrix import Case
from pytest_xfperf.measure.stats import summarize
from pytest_xfperf.metrics import Verdict
from pytest_xfperf.report import html as html_report
from pytest_xfperf.report import markdown
from pytest_xfperf.report.render import render_outputs
from pytest_xfperf.report.tables import (
    build_groups,
    cost_per_million,
    delta_text,
    drop_empty_columns,
    recommendations,
)
from pytest_xfperf.result import Result
from pytest_xfperf.settings import parse_prices
from pytest_xfperf.values import Shape

PASS, REGRESSED = Verdict.PASS, Verdict.REGRESSED
IMPROVED, NO_BASELINE = Verdict.IMPROVED, Verdict.NO_BASELINE
# Eager PyTorch's p50 at each batch in suite(): the other side of each speed-up.
EAGER_P50 = {1: 140.0, 8: 400.0}
META = {"machine": {"key": "cpu-test-2c", "cpu_name": "Test CPU", "cores": 2},
        "versions": {"torch": "2.13.0", "onnxruntime": "1.32.0"}}


def result(backend: str, precision: str, p50: float, batch: int = 1, cosine: float = 1.0,
           verdict: Verdict = PASS, delta: float | None = None, model_mb: float = 400.0,
           scenario: str = "single-stream") -> Result:
    case = Case("bert-base", backend, precision, Shape(batch, 128), scenario=scenario)
    samples = [p50 / 1000 * (1 + 0.01 * (i % 5)) for i in range(20)]
    r = Result(case=case, stats=summarize(samples, batch), samples_ms=[s * 1000 for s in samples],
               memory_mb=10.0, model_mb=model_mb, verdict=verdict)
    if not case.is_fp32_reference:
        r.accuracy = {"cosine": cosine}
        r.speedup = EAGER_P50[batch] / p50
    if delta is not None:
        r.gate = GateOutcome(deltas={"p50_ms": delta},
                             regressions=["p50_ms baseline 1 ms, now 2 ms"]
                             if verdict == REGRESSED else [])
    return r


def suite() -> list[Result]:
    return [
        result("torch-cpu", "fp32", 140.0, model_mb=420.0),
        result("ort-cpu", "fp32", 130.0, cosine=1.0, delta=0.01, model_mb=420.0),
        result("ort-cpu", "int8-dynamic", 35.0, cosine=0.9997, verdict=REGRESSED, delta=0.4,
               model_mb=105.0),
        result("ort-cpu", "int8-static", 30.0, cosine=0.97, verdict=IMPROVED, delta=-0.2,
               model_mb=110.0),
        result("torch-cpu", "fp32", 400.0, batch=8, verdict=NO_BASELINE),
        result("ort-cpu", "int8-dynamic", 100.0, batch=8, cosine=0.9996, verdict=NO_BASELINE),
    ]


def test_cost_per_million_requests():
    # 3.60 $/h at 100 requests/s: 360,000 requests for 3.60 $ -> 10 $ per million
    assert cost_per_million(3.6, 100.0) == pytest.approx(10.0)
    assert cost_per_million(None, 100.0) is None and cost_per_million(1.0, 0.0) is None


def test_groups_put_failures_first_and_compute_speedups_and_cost():
    groups = build_groups(suite(), price_per_hour=0.36)
    assert [g.title for g in groups] == ["bert-base b1s128", "bert-base b8s128"]
    first = groups[0].rows
    assert first[0].label == "ort-cpu/int8-dynamic" and first[0].failed
    by_label = {r.label: r for r in first}
    assert by_label["ort-cpu/int8-dynamic"].speedup == pytest.approx(
        by_label["torch-cpu/fp32"].p50_ms / by_label["ort-cpu/int8-dynamic"].p50_ms)
    row = by_label["ort-cpu/fp32"]
    assert row.cost_per_million == pytest.approx(0.36 / 3600 / row.throughput * 1e6)


def test_recommendations_pick_from_the_numbers():
    picks = {p.goal: p for p in recommendations(build_groups(suite(), None))["bert-base"]}
    assert picks["lowest latency"].row.label == "ort-cpu/int8-static"
    assert picks["highest throughput"].row.label == "ort-cpu/int8-dynamic"  # 8 rows / 100 ms
    assert picks["highest throughput"].row.result.case.shape.batch == 8
    assert picks["smallest memory"].row.label == "ort-cpu/int8-dynamic"
    assert "105.0 MB of weights (4.0x smaller" in picks["smallest memory"].figures
    # int8-static is faster but loses 3 % cosine: outside the 1 % drop
    accurate = picks["fastest within a 1% accuracy drop"]
    assert accurate.row.label == "ort-cpu/int8-dynamic" and "cosine 0.99970" in accurate.figures


def test_delta_words_follow_the_metric_direction():
    rows = {r.label: r for r in build_groups(suite(), None)[0].rows}
    assert delta_text(rows["ort-cpu/int8-dynamic"]) == "+40.0% slower"
    assert delta_text(rows["ort-cpu/int8-static"]) == "-20.0% faster"
    assert delta_text(rows["torch-cpu/fp32"]) == "-"
    serving = result("ort-cpu", "fp32", 10.0, scenario="offline")
    serving.serving_metrics = {"throughput": 90.0}
    serving.serving = {"offline": {"throughput_rps": 90.0}}
    serving.gate = GateOutcome(deltas={"throughput": -0.25})
    (row,) = build_groups([serving], None)[0].rows
    assert delta_text(row) == "-25.0% slower"


def test_empty_columns_are_dropped_but_not_the_first_and_last():
    columns, rows = drop_empty_columns(["a", "b", "c", "d"], [["x", "-", "1", "-"]])
    assert columns == ["a", "c", "d"] and rows == [["x", "1", "-"]]


def test_markdown_has_failures_first_tables_recommendations_and_facts():
    results = suite()
    groups = build_groups(results, 0.36)
    text = markdown.render(results, groups, recommendations(groups), META,
                           ("cpu-test-2c", 0.36), ["xfperf: a note"])
    assert text.index("## Failures") < text.index("## bert-base b1s128")
    assert "**❌ regressions found** — 6 case(s)" in text
    assert "`bert-base/ort-cpu/int8-dynamic/b1s128` **REGRESSED**" in text
    assert "| ort-cpu/int8-dynamic | 35" in text and "+40.0% slower" in text
    assert "| GPU MB |" not in text  # no GPU column on a CPU run
    assert "price: 0.36 $/hour for `cpu-test-2c`" in text
    assert "torch 2.13.0" in text and "machine `cpu-test-2c`" in text
    assert "**bert-base, lowest latency:** `ort-cpu/int8-static`" in text
    assert "- a note" in text


def test_html_is_one_file_with_escaped_text_and_embedded_images():
    results = suite()
    results[0].case = Case("<b>", "torch-cpu", "fp32", Shape(1, 128))
    groups = build_groups(results, None)
    page = html_report.render(results, groups, recommendations(groups), META, None, [],
                              {"&lt;b&gt; b1s128": ("x.png", b"\x89PNG fake")})
    assert page.startswith("<!DOCTYPE html>") and "<b> b1s128" not in page
    assert "&lt;b&gt; b1s128" in page
    assert '<tr class="failed">' in page
    assert "src=\"data:image/png;base64,iVBORyBmYWtl\"" in page


def test_plots_are_pngs_and_name_their_files(tmp_path: Path):
    pytest.importorskip("matplotlib")
    results = suite()
    results[2].samples_ms = [35.0 + i * 0.1 for i in range(30)]
    messages = render_outputs(results, META, {results[2].case.id: [25.0 + i * 0.1
                                                                   for i in range(30)]},
                              {}, None, tmp_path / "r.html", tmp_path / "plots",
                              github_summary=False)
    names = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert names == ["latency_bert-base_b1s128.png", "latency_bert-base_b8s128.png",
                     "samples_bert-base_ort-cpu_int8-dynamic_b1s128.png",
                     "throughput_bert-base.png"]
    assert all((tmp_path / "plots" / n).read_bytes().startswith(b"\x89PNG") for n in names)
    assert (tmp_path / "r.html").read_text().count("data:image/png;base64,") == 4
    assert any("4 plot(s) written" in m for m in messages)


def test_missing_matplotlib_is_a_message_and_html_still_comes(tmp_path: Path, monkeypatch):
    # matplotlib is installed here: a None entry makes its import fail as if it were not.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    messages = render_outputs(suite(), META, {}, {}, tmp_path / "r.md", tmp_path / "r.html",
                              tmp_path / "plots", github_summary=False)
    assert any("plots skipped: matplotlib is not installed" in m for m in messages)
    assert "plots skipped" in (tmp_path / "r.html").read_text()
    assert (tmp_path / "r.md").is_file() and not (tmp_path / "plots").exists()


def test_unwritable_paths_are_messages_not_errors(tmp_path: Path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(blocker / "summary.md"))
    messages = render_outputs(suite(), META, {}, {}, blocker / "r.md", None, None)
    assert any(m.startswith("xfperf: could not write the Markdown report") for m in messages)
    assert any("could not append to $GITHUB_STEP_SUMMARY" in m for m in messages)


def test_step_summary_is_appended(tmp_path: Path, monkeypatch):
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    render_outputs(suite(), META, {}, {"other-machine": 1.0}, None, None, None)
    text = summary.read_text()
    assert text.startswith("earlier step\n# pytest-xfperf report")


def test_price_without_this_machine_says_so():
    messages = render_outputs(suite(), META, {}, {"gpu-x": 2.0}, None, None, None,
                              github_summary=False)
    assert "no price for this machine `cpu-test-2c`" in messages[0]


def test_prices_parse_from_text_and_tables():
    assert parse_prices("cpu-a=0.1, gpu-b=3") == {"cpu-a": 0.1, "gpu-b": 3.0}
    assert parse_prices({"cpu-a": "0.5"}) == {"cpu-a": 0.5}
    for bad in ("cpu-a", "cpu-a=x", "cpu-a=0", "cpu-a=-1", "a=1=2"):
        with pytest.raises(ValueError, match="prices"):
            parse_prices(bad)
