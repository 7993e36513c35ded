"""The terminal summary: one table per model and shape, one row per backend/precision."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pytest_xfperf.metrics import Verdict
from pytest_xfperf.report.tables import (
    GENERATION,
    GENERATION_COLUMNS,
    GENERATION_NOTE,
    Row,
    build_groups,
    delta_text,
    fmt,
    generation_cells,
    serving_figures,
    si,
    speedup_delta_text,
    speedup_text,
)
from pytest_xfperf.result import Result

HEADER = ("backend/precision", "p50 ms", "p99 ms", "samples/s", "vs torch", "FLOP/s",
          "% peak", "cosine",
          "retrieval", "p50 vs base", "speed-up vs base", "verdict")
SERVING_HEADER = ("backend/precision", "req/s", "tokens/s", "p50 ms", "p99 ms", "padding",
                  "batches", "cosine", "vs base", "verdict")


def _single_cells(row: Row) -> tuple[str, ...]:
    r = row.result
    return (row.label, fmt(row.p50_ms, ".2f"), fmt(row.p99_ms, ".2f"),
            fmt(row.throughput, ".1f"), speedup_text(row),
            si(row.flops_per_s), fmt(row.peak_percent, ".1%"),
            "ref" if r.case.is_fp32_reference else fmt(row.cosine, ".5f"),
            fmt(row.retrieval, ".3f"), delta_text(row), speedup_delta_text(row),
            r.verdict.value)


def _serving_cells(row: Row) -> tuple[str, ...]:
    r = row.result
    figures, _ = serving_figures(r)
    sizes = figures.get("batch_sizes") or {}
    mean_batch = (sum(int(k) * v for k, v in sizes.items()) / sum(sizes.values())
                  if sizes else None)
    return (row.label, fmt(row.throughput, ".1f", "none" if r.bound_unmet else "-"),
            fmt(row.tokens_per_s, ".0f"), fmt(row.p50_ms, ".1f"), fmt(row.p99_ms, ".1f"),
            fmt(row.padding_share, ".0%"), fmt(mean_batch, ".1f"), fmt(row.cosine, ".5f"),
            fmt(row.delta, "+.1%"), r.verdict.value)


def _write_table(header: tuple[str, ...], lines: Sequence[tuple[str, ...]],
                 write_line: Callable[[str], None]) -> None:
    table = [header, *lines]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        write_line("  " + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


def write_summary(results: Sequence[Result], write_line: Callable[[str], None],
                  verbose: bool = False) -> None:
    """One table per model, shape and scenario (the rows every report shows), then the
    graph changes and what left cases `unstable` (case by case when ``verbose``)."""
    groups = build_groups([r for r in results], None, failures_first=False)
    gpu = any(r.device_stats is not None for r in results)
    served = False
    generated = False
    for group in groups:
        write_line(f"{group.title}:")
        if group.scenario == GENERATION:
            generated = True
            _write_table(GENERATION_COLUMNS,
                         [tuple(generation_cells(row)) for row in group.rows], write_line)
            continue
        if group.scenario != "single-stream":
            served = True
            _write_table(SERVING_HEADER, [_serving_cells(row) for row in group.rows],
                         write_line)
            continue
        header: tuple[str, ...] = HEADER
        lines: list[tuple[str, ...]] = [_single_cells(row) for row in group.rows]
        if gpu:  # GPU cases: device time (CUDA events) next to the synced wall clock
            header = (*HEADER[:3], "device p50", *HEADER[3:])
            lines = [(*line[:3], fmt(row.result.device_stats.p50_ms, ".3f")
                      if row.result.device_stats else "-", *line[3:])
                     for line, row in zip(lines, group.rows, strict=True)]
        _write_table(header, lines, write_line)
    if gpu:
        write_line("p50/p99: wall clock of one synchronized call, inputs already on the device, "
                   "output left there; device p50: GPU time by CUDA events (the gate's clock)")
    if generated:
        write_line(GENERATION_NOTE)
    if served:
        write_line("offline: the median of its passes; server: the highest Poisson arrival rate "
                   "whose p99 (queueing included) met the bound, and the latencies at that rate; "
                   "batches: mean batch size")
    for r in results:
        if r.bound_unmet:
            write_line(f"{r.case.id}: {r.bound_unmet}")
    for r in results:
        for line in r.drift:
            write_line(f"graph drift in {r.case.id}: {line}")
        for line in r.graph_notes:
            write_line(f"graph change in {r.case.id}: {line}")
    _write_unstable([r for r in results if r.verdict == Verdict.UNSTABLE and r.gate],
                    write_line, verbose)


def _write_unstable(unstable: Sequence[Result], write_line: Callable[[str], None],
                    verbose: bool) -> None:
    """An `unstable` case passes, so pytest shows nothing of it; without this line its
    verdict would read as unexplained (a failing one, with --xfperf-fail-on-unstable, says
    the same in its failure message)."""
    if not unstable:
        return
    write_line(f"unstable: {len(unstable)} case(s) whose interval reaches past a tolerance line "
               "and is wider than the tolerance: this run shows neither a pass nor a "
               "regression for them. "
               + ("Each one's figures, and what would resolve it:" if verbose else
                  "-v prints each one's figures and what would resolve it."))
    if verbose:
        for r in unstable:
            assert r.gate is not None
            for line in r.gate.unstable:
                write_line(f"  {r.case.id}: {line}")
