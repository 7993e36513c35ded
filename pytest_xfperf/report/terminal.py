"""The terminal summary: one table per model and shape, one row per backend/precision."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from pytest_xfperf.result import Result

HEADER = ("backend/precision", "p50 ms", "p99 ms", "samples/s", "vs torch", "cosine",
          "retrieval", "p50 vs base", "verdict")


def speedups(results: Sequence[Result]) -> dict[str, float]:
    """Speed-up of each case's p50 over PyTorch FP32 eager on the same model and shape."""
    reference = {(r.case.model, r.case.shape): r.stats.p50_ms
                 for r in results if r.case.is_reference and r.stats is not None}
    out = {}
    for r in results:
        base = reference.get((r.case.model, r.case.shape))
        if base and r.stats is not None and r.stats.p50_ms > 0:
            out[r.case.id] = base / r.stats.p50_ms
    return out


SERVING_HEADER = ("backend/precision", "req/s", "tokens/s", "p50 ms", "p99 ms", "padding",
                  "batches", "cosine", "vs base", "verdict")


def serving_figures(r: Result) -> tuple[dict[str, Any], str]:
    """The figures a serving row shows (offline: the median pass; server: the highest rate
    meeting the bound) and the gated metric's name."""
    if r.case.scenario == "server":
        server = r.serving.get("server") or {}
        return dict(server.get("at_max_rate") or {}), "max_rate"
    # Offline latencies count from a start where every request is queued at once: not a
    # request latency anyone sees, so not shown.
    offline = r.serving.get("offline") or {}
    return {k: v for k, v in offline.items() if k not in ("p50_ms", "p99_ms")}, "throughput"


def serving_rows(results: Sequence[Result]) -> dict[str, list[tuple[str, ...]]]:
    groups: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for r in results:
        if not r.case.serving:
            continue
        figures, gated = serving_figures(r)
        delta = r.gate.deltas.get(gated) if r.gate else None
        sizes = figures.get("batch_sizes") or {}
        mean_batch = (sum(int(k) * v for k, v in sizes.items()) / sum(sizes.values())
                      if sizes else None)
        rate = r.serving_metrics.get(gated)
        groups[f"{r.case.model} {r.case.shape.label} {r.case.scenario}"].append((
            f"{r.case.backend}/{r.case.precision}",
            f"{rate:.1f}" if rate else ("none" if r.bound_unmet else "-"),
            f"{figures['tokens_per_s']:.0f}" if "tokens_per_s" in figures else "-",
            f"{figures['p50_ms']:.1f}" if figures.get("p50_ms") is not None else "-",
            f"{figures['p99_ms']:.1f}" if figures.get("p99_ms") is not None else "-",
            f"{figures['padding_share']:.0%}" if "padding_share" in figures else "-",
            f"{mean_batch:.1f}" if mean_batch else "-",
            f"{r.accuracy['cosine']:.5f}" if "cosine" in r.accuracy else "-",
            f"{delta:+.1%}" if delta is not None else "-",
            r.verdict,
        ))
    return groups


def rows(results: Sequence[Result]) -> dict[str, list[tuple[str, ...]]]:
    ups = speedups(results)
    groups: dict[str, list[tuple[str, ...]]] = defaultdict(list)
    for r in results:
        if r.case.serving:
            continue
        s = r.stats
        delta = r.gate.deltas.get("p50_ms") if r.gate else None
        groups[f"{r.case.model} {r.case.shape.label}"].append((
            f"{r.case.backend}/{r.case.precision}",
            f"{s.p50_ms:.2f}" if s else "-",
            f"{s.p99_ms:.2f}" if s else "-",
            f"{s.throughput:.1f}" if s else "-",
            f"{ups[r.case.id]:.2f}x" if r.case.id in ups else "-",
            "ref" if r.case.is_reference else f"{r.accuracy.get('cosine', float('nan')):.5f}",
            f"{r.accuracy['retrieval']:.3f}" if "retrieval" in r.accuracy else "-",
            f"{delta:+.1%}" if delta is not None else "-",
            r.verdict,
        ))
    return groups


def _write_table(header: tuple[str, ...], lines: Sequence[tuple[str, ...]],
                 write_line: Callable[[str], None]) -> None:
    table = [header, *lines]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    for row in table:
        write_line("  " + "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))))


def write_summary(results: Sequence[Result], write_line: Callable[[str], None]) -> None:
    single = [r for r in results if not r.case.serving]
    _write_single_stream(single, write_line)
    served = serving_rows(results)
    for group, lines in served.items():
        write_line(f"{group}:")
        _write_table(SERVING_HEADER, lines, write_line)
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


def _write_single_stream(results: Sequence[Result], write_line: Callable[[str], None]) -> None:
    gpu = any(r.device_stats is not None for r in results)
    device = {r.case.id: f"{r.device_stats.p50_ms:.3f}" for r in results
              if r.device_stats is not None}
    header = HEADER if not gpu else (*HEADER[:3], "device p50", *HEADER[3:])
    for group, lines in rows(results).items():
        if gpu:  # GPU cases: device time (CUDA events) next to the synced wall clock
            ids = [r.case.id for r in results if f"{r.case.model} {r.case.shape.label}" == group]
            lines = [(*line[:3], device.get(case_id, "-"), *line[3:])
                     for line, case_id in zip(lines, ids, strict=True)]
        write_line(f"{group}:")
        _write_table(header, lines, write_line)
    if gpu:
        write_line("p50/p99: wall clock of one synchronized call, inputs already on the device, "
                   "output left there; device p50: GPU time by CUDA events")
