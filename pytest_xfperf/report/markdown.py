"""The Markdown report (``--xfperf-markdown PATH``, and the GitHub step summary)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_xfperf.report.tables import (
    GENERATION,
    GENERATION_COLUMNS,
    GENERATION_NOTE,
    Group,
    Recommendation,
    delta_text,
    drop_empty_columns,
    fmt,
    generation_cells,
    header_facts,
    si,
    speedup_delta_text,
    speedup_text,
    summary_counts,
)
from pytest_xfperf.result import Result

SINGLE_COLUMNS = ("backend/precision", "p50 ms", "p99 ms", "samples/s", "vs torch",
                  "FLOP/s", "% peak", "cosine", "retrieval", "weights MB", "memory MB", "GPU MB",
                  "p50 vs baseline", "speed-up vs baseline", "$ / 1M req", "verdict")
SERVING_COLUMNS = ("backend/precision", "req/s", "tokens/s", "p50 ms", "p99 ms", "padding",
                   "cosine", "weights MB", "memory MB", "GPU MB", "vs baseline", "$ / 1M req",
                   "verdict")
INCLUDES = (
    "p50/p99: wall clock of one synchronized call with the inputs already bound (on the device "
    "for GPU backends) and the output left where the backend put it; no tokenization, no "
    "host-device copy of a request.",
    "samples/s: batch rows per second of one stream of calls; vs torch: speed-up over PyTorch "
    "of the same model and shape on the same device (eager on the CPU, CUDA graph on a GPU).",
    "offline: requests/s of the median of three passes over a seeded workload of varied "
    "lengths through the dynamic batcher; server: the highest Poisson arrival rate whose p99 "
    "latency (queueing, padding and host copies included) met the bound.",
    "FLOP/s: the model's matrix-product FLOPs per call (counted by torch's FlopCounterMode) "
    "over p50; % peak: that against a large matrix product measured on this machine in the "
    "case's arithmetic and library (cuBLAS on a GPU, ONNX Runtime on the CPU).",
    "cosine/retrieval: agreement with PyTorch FP32 (token outputs; nearest-neighbour agreement "
    "over the bundled sentence corpus).",
    "weights MB: size of what the backend runs (the ONNX file, or the torch module's weights at "
    "the case's precision); memory MB: growth of peak host RSS over the case (build excluded; "
    "it depends on what earlier cases left allocated); GPU MB: peak device memory of the case.",
    "$ / 1M req: the machine's price per hour over its throughput in this row, with the "
    "machine kept busy.",
    GENERATION_NOTE,
)


def _cells(row: Any, serving: bool) -> list[str]:
    r = row.result
    money = fmt(row.cost_per_million, ".4f")
    common_tail = [fmt(row.model_mb, ".1f"), fmt(row.memory_mb, ".1f"),
                   fmt(row.gpu_memory_mb, ".1f"), delta_text(row),
                   money, f"**{r.verdict.value}**" if r.failed else r.verdict.value]
    if serving:
        return [row.label, fmt(row.throughput, ".1f", "none" if r.bound_unmet else "-"),
                fmt(row.tokens_per_s, ".0f"), fmt(row.p50_ms, ".1f"), fmt(row.p99_ms, ".1f"),
                fmt(row.padding_share, ".0%"), fmt(row.cosine, ".5f"), *common_tail]
    tail = [*common_tail[:4], speedup_delta_text(row), *common_tail[4:]]
    return [row.label, fmt(row.p50_ms, ".2f"), fmt(row.p99_ms, ".2f"), fmt(row.throughput, ".1f"),
            speedup_text(row),
            si(row.flops_per_s), fmt(row.peak_percent, ".1%"),
            "ref" if r.case.is_fp32_reference else fmt(row.cosine, ".5f"),
            fmt(row.retrieval, ".3f"), *tail]


def _table(columns: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    columns, rows = drop_empty_columns(columns, rows)

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    align = ["---"] + ["---:"] * (len(columns) - 2) + ["---"]
    return [line(columns), "| " + " | ".join(align) + " |", *(line(r) for r in rows)]


def render(results: Sequence[Result], groups: Sequence[Group],
           picks: Mapping[str, Sequence[Recommendation]], meta: Mapping[str, Any],
           price: tuple[str, float] | None, notes: Sequence[str],
           plots: Mapping[str, str] | None = None) -> str:
    counts = summary_counts(results)
    failed = [r for r in results if r.failed]
    out = ["# pytest-xfperf report", ""]
    status = "❌ regressions found" if failed else "✅ no regressions"
    out.append(f"**{status}** — {len(results)} case(s): "
               + ", ".join(f"{n} {verdict}" for verdict, n in counts.items()))
    out.append("")
    out += [f"- {line}" for line in header_facts(meta)]
    if price is not None:
        out.append(f"- price: {price[1]:g} $/hour for `{price[0]}`")
    out.append("")
    if failed:
        out += ["## Failures", ""]
        for r in failed:
            message = r.failure_message().splitlines()
            out.append(f"- `{r.case.id}` **{r.verdict.value}**")
            out += [f"  - {line.strip()}" for line in message[1:]]
        out.append("")
    for group in groups:
        serving = group.scenario != "single-stream"
        out += [f"## {group.title}" + (" ❌" if group.failed else ""), ""]
        if group.scenario == GENERATION:
            out += _table(GENERATION_COLUMNS, [generation_cells(row) for row in group.rows])
        else:
            out += _table(SERVING_COLUMNS if serving else SINGLE_COLUMNS,
                          [_cells(row, serving) for row in group.rows])
        if plots and group.title in plots:
            out += ["", f"![latency of {group.title}]({plots[group.title]})"]
        out.append("")
    titles = {g.title for g in groups}
    others = [t for t in (plots or {}) if t not in titles]
    if others and plots:
        out += ["## Charts", ""] + [f"![{t}]({plots[t]})" for t in others] + [""]
    if picks:
        out += ["## Recommendations (from this run's numbers)", ""]
        for model, items in picks.items():
            for item in items:
                out.append(f"- **{model}, {item.goal}:** `{item.row.label}` "
                           f"({item.row.result.case.shape}) — {item.figures}")
        out.append("")
    out += ["## What the numbers include", ""] + [f"- {line}" for line in INCLUDES]
    if notes:
        out += ["", "## Notes", ""] + [f"- {n.removeprefix('xfperf: ')}" for n in notes]
    return "\n".join(out) + "\n"
