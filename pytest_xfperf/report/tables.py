"""What the human-readable reports show, computed once from the results: rows per model,
shape and scenario (failures first), cost per million requests, and recommendations.

Markdown and HTML render these same rows, so the two never disagree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_xfperf.result import Result

# The recommendation "best accuracy within a drop": the reference study fails an INT8 model
# whose accuracy drops by more than 1 %.
MAX_ACCURACY_DROP = 0.01


@dataclass
class Row:
    result: Result
    label: str  # backend/precision
    p50_ms: float | None
    p99_ms: float | None
    throughput: float | None  # samples/s (single-stream) or requests/s (serving)
    speedup: float | None
    memory_mb: float | None
    gpu_memory_mb: float | None
    model_mb: float | None
    cosine: float | None
    retrieval: float | None
    delta: float | None  # relative change of the gated speed figure vs the baseline
    delta_metric: str
    cost_per_million: float | None
    padding_share: float | None = None
    tokens_per_s: float | None = None
    speedup_delta: float | None = None  # change of the speed-up vs the baseline's
    flops_per_s: float | None = None  # achieved at p50 (measure/peak.py)
    peak_percent: float | None = None  # of the GEMM peak measured at the case's arithmetic
    ttft_delta: float | None = None  # generative cases: change of the TTFT vs the baseline

    @property
    def failed(self) -> bool:
        return self.result.failed


@dataclass
class Group:
    title: str  # "bert-base b1s128" or "minilm-l6 b16s128 server"
    scenario: str
    rows: list[Row] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return any(r.failed for r in self.rows)


@dataclass
class Recommendation:
    goal: str
    row: Row
    figures: str


def _finite(value: Any) -> float | None:
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    return None


def cost_per_million(price_per_hour: float | None, requests_per_s: float | None) -> float | None:
    """Price of a million requests on a machine kept busy at this throughput."""
    if price_per_hour is None or not requests_per_s or requests_per_s <= 0:
        return None
    return price_per_hour / 3600 / requests_per_s * 1_000_000


def si(value: float | None) -> str:
    """A FLOP/s figure with its SI prefix: "92.4 G", "11.3 T"."""
    if value is None:
        return "-"
    for factor, prefix in ((1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M")):
        if value >= factor:
            return f"{value / factor:.3g} {prefix}"
    return f"{value:.3g}"


def speedups(results: Sequence[Result]) -> dict[str, float]:
    """Speed-up of each case over eager PyTorch on the same device, model and shape."""
    out: dict[str, float] = {}
    for r in results:
        if r.stats is not None and r.case.is_speedup_reference:
            out[r.case.id] = 1.0
        elif r.stats is not None and r.speedup is not None:
            out[r.case.id] = r.speedup
    return out


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


def build_groups(results: Sequence[Result], price_per_hour: float | None,
                 failures_first: bool = True) -> list[Group]:
    """The table model of every report: one group per model, shape (and scenario), one row
    per backend/precision."""
    ups = speedups(results)
    groups: dict[str, Group] = {}
    for r in results:
        case = r.case
        title = f"{case.model} {case.shape.label}" + (f" {case.scenario}" if case.serving
                                                        else "")
        group = groups.setdefault(title, Group(title, GENERATION if case.generative
                                                 else case.scenario))
        if case.generative:
            metrics = r.generation_metrics
            tokens = _finite(metrics.get("tokens_per_s"))
            row = Row(r, f"{case.backend}/{case.precision}", None, None, None,
                      ups.get(case.id), r.memory_mb, r.gpu_memory_mb, r.model_mb,
                      None if case.is_fp32_reference else _finite(r.accuracy.get("cosine")),
                      None, r.gate.deltas.get(r.timing_metric) if r.gate else None,
                      r.timing_metric, None, tokens_per_s=tokens,
                      speedup_delta=r.gate.deltas.get("speedup") if r.gate else None,
                      ttft_delta=(r.gate.deltas.get("ttft_ms")
                                  if r.gate and r.timing_metric != "ttft_ms" else None))
        elif case.serving:
            figures, gated = serving_figures(r)
            throughput = _finite(r.serving_metrics.get(gated))
            row = Row(r, f"{case.backend}/{case.precision}", _finite(figures.get("p50_ms")),
                      _finite(figures.get("p99_ms")), throughput, None,
                      r.memory_mb, r.gpu_memory_mb, r.model_mb,
                      _finite(r.accuracy.get("cosine")),
                      _finite(r.accuracy.get("retrieval")),
                      r.gate.deltas.get(gated) if r.gate else None, gated,
                      cost_per_million(price_per_hour, throughput),
                      _finite(figures.get("padding_share")), _finite(figures.get("tokens_per_s")))
        else:
            s = r.stats
            row = Row(r, f"{case.backend}/{case.precision}", s.p50_ms if s else None,
                      s.p99_ms if s else None, s.throughput if s else None, ups.get(case.id),
                      r.memory_mb, r.gpu_memory_mb, r.model_mb,
                      None if case.is_fp32_reference else _finite(r.accuracy.get("cosine")),
                      _finite(r.accuracy.get("retrieval")),
                      r.gate.deltas.get("p50_ms") if r.gate else None, "p50_ms",
                      cost_per_million(price_per_hour, s.throughput if s else None),
                      speedup_delta=r.gate.deltas.get("speedup") if r.gate else None,
                      flops_per_s=_finite(r.compute.get("flops_per_s")),
                      peak_percent=_finite(r.compute.get("peak_percent")))
        group.rows.append(row)
    if not failures_first:
        return list(groups.values())
    ordered = sorted(groups.values(), key=lambda g: (not g.failed, g.scenario != "single-stream",
                                                     g.title))
    for group in ordered:
        group.rows.sort(key=lambda row: not row.failed)
    return ordered


def recommendations(groups: Sequence[Group]) -> dict[str, list[Recommendation]]:
    """Per model, from this run's numbers: lowest latency, highest throughput, smallest
    memory, and the fastest setup within MAX_ACCURACY_DROP of FP32."""
    by_model: dict[str, list[Row]] = {}
    for group in groups:
        for row in group.rows:
            by_model.setdefault(row.result.case.model, []).append(row)
    out: dict[str, list[Recommendation]] = {}
    for model, rows in by_model.items():
        picks: list[Recommendation] = []
        single = [r for r in rows if not r.result.case.serving and r.p50_ms is not None]
        if single:
            smallest = min(r.result.case.shape.batch for r in single)
            at_one = [r for r in single if r.result.case.shape.batch == smallest]
            best = min(at_one, key=lambda r: r.p50_ms or math.inf)
            picks.append(Recommendation(
                "lowest latency", best,
                f"p50 {best.p50_ms:.2f} ms, p99 {best.p99_ms:.2f} ms at "
                f"{best.result.case.shape}" + (f", {best.speedup:.2f}x PyTorch FP32"
                                               if best.speedup else "")))
        with_rate = [r for r in rows if r.throughput]
        if with_rate:
            best = max(with_rate, key=lambda r: r.throughput or 0.0)
            what = ("requests/s" if best.result.case.serving else "samples/s")
            scenario = (f" ({best.result.case.scenario}, max batch {best.result.case.shape.batch})"
                        if best.result.case.serving else f" at {best.result.case.shape}")
            picks.append(Recommendation("highest throughput", best,
                                        f"{best.throughput:.1f} {what}{scenario}"))
        # GPU memory where measured; otherwise the weights' size (host RSS growth depends on
        # what earlier cases left in the allocators: no basis for a recommendation).
        gpu = [r for r in rows if r.gpu_memory_mb is not None]
        weights = [r for r in rows if r.model_mb is not None]
        if gpu:
            best = min(gpu, key=lambda r: r.gpu_memory_mb or 0.0)
            picks.append(Recommendation("smallest memory", best,
                                        f"{best.gpu_memory_mb:.1f} MB peak GPU memory"))
        elif weights:
            best = min(weights, key=lambda r: r.model_mb or 0.0)
            largest = max(r.model_mb or 0.0 for r in weights)
            picks.append(Recommendation(
                "smallest memory", best,
                f"{best.model_mb:.1f} MB of weights ({largest / (best.model_mb or 1):.1f}x "
                f"smaller than the largest, {largest:.1f} MB)"))
        accurate = [r for r in single if (r.result.case.is_fp32_reference or (
            r.cosine is not None and r.cosine >= 1 - MAX_ACCURACY_DROP))
            and (r.retrieval is None or r.retrieval >= 1 - MAX_ACCURACY_DROP)]
        if accurate:
            smallest = min(r.result.case.shape.batch for r in accurate)
            best = min((r for r in accurate if r.result.case.shape.batch == smallest),
                       key=lambda r: r.p50_ms or math.inf)
            cosine = ("reference" if best.result.case.is_fp32_reference
                      else f"cosine {best.cosine:.5f}")
            picks.append(Recommendation(
                f"fastest within a {MAX_ACCURACY_DROP:.0%} accuracy drop", best,
                f"p50 {best.p50_ms:.2f} ms, {cosine}"
                + (f", retrieval {best.retrieval:.3f}" if best.retrieval is not None else "")))
        out[model] = picks
    return out


def summary_counts(results: Sequence[Result]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.verdict.value] = counts.get(r.verdict.value, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def fmt(value: float | None, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def delta_text(row: Row) -> str:
    """The change vs the baseline with its direction in words (arrows alone are ambiguous:
    up is bad for latency and good for throughput)."""
    if row.delta is None:
        return "-"
    if abs(row.delta) < 0.0005:
        return "±0.0%"
    return _change(row.delta, row.delta_metric in TIMES)


TIMES = ("p50_ms", "ttft_ms", "tpot_ms")  # lower is better


def _change(delta: float, is_time: bool) -> str:
    if abs(delta) < 0.0005:
        return "±0.0%"
    if is_time:
        word = "slower" if delta > 0 else "faster"
    else:
        word = "faster" if delta > 0 else "slower"
    return f"{delta:+.1%} {word}"


GENERATION = "generation"  # the group kind of generative cases
GENERATION_COLUMNS = ("backend/precision", "TTFT ms", "TPOT ms", "TPOT p99 ms", "tokens/s",
                      "vs torch", "prefill % peak", "decode GB/s", "% copy bw", "KV MB",
                      "cosine", "top-1", "tokens = FP32", "TPOT vs base", "TTFT vs base",
                      "speed-up vs base", "verdict")
GENERATION_NOTE = (
    "generation: greedy, batch x prompt x new tokens; TTFT: prefill to the first token; "
    "TPOT: mean decode step of a generation (p99 over every step); tokens/s: batch over TPOT; "
    "vs torch: PyTorch's TPOT on the same device over this TPOT (eager on the CPU, the "
    "captured decode on a GPU); "
    "% peak: prefill FLOP/s against the measured GEMM peak; decode GB/s: weights and KV cache "
    "read per step over TPOT, against a measured large copy; cosine/top-1: prompt logits vs "
    "FP32 PyTorch; tokens = FP32: share of greedy tokens FP32 would choose after the same "
    "prefix, up to the first that it would not (a near-tie within the precision's error on "
    "the prompt counts as chosen).")


def generation_cells(row: Row) -> list[str]:
    """The cells of a generative row, in GENERATION_COLUMNS' order (every report's)."""
    r = row.result
    details, compute, metrics = r.generation, r.compute, r.generation_metrics
    tpot = details.get("tpot_ms") or {}
    bandwidth = _finite(compute.get("decode_bytes_per_s"))
    reference = r.case.is_fp32_reference
    return [row.label, fmt(_finite(metrics.get("ttft_ms")), ".2f"),
            fmt(_finite(metrics.get("tpot_ms")), ".3f"), fmt(_finite(tpot.get("p99")), ".3f"),
            fmt(row.tokens_per_s, ".0f"), speedup_text(row),
            fmt(_finite(compute.get("prefill_peak_percent")), ".1%"),
            fmt(None if bandwidth is None else bandwidth / 1e9, ".1f"),
            fmt(_finite(compute.get("decode_bandwidth_percent")), ".1%"),
            fmt(_finite(metrics.get("kv_cache_mb")), ".1f"),
            "ref" if reference else fmt(row.cosine, ".5f"),
            "ref" if reference else fmt(_finite(r.accuracy.get("top1")), ".3f"),
            "ref" if reference else fmt(_finite(r.accuracy.get("token_agreement")), ".3f"),
            delta_text(row),
            "-" if row.ttft_delta is None else _change(row.ttft_delta, True),
            speedup_delta_text(row), r.verdict.value]


def speedup_text(row: Row) -> str:
    """The speed-up over PyTorch on the same device, as a factor ("3.33x")."""
    return "-" if row.speedup is None else f"{row.speedup:.2f}x"


def speedup_delta_text(row: Row) -> str:
    """The change of the speed-up over eager PyTorch against the baseline's."""
    if row.speedup_delta is None:
        return "-"
    word = "gained" if row.speedup_delta > 0 else "lost"
    return f"{row.speedup_delta:+.1%} {word}"


def header_facts(meta: Mapping[str, Any]) -> list[str]:
    machine = meta.get("machine", {})
    versions = meta.get("versions", {})
    isa = " ".join(machine.get("isa") or [])
    lines = [f"machine `{machine.get('key', '?')}`: {machine.get('cpu_name', '?')} "
             f"({isa}), {machine.get('cores', '?')} cores"
             + (f", {machine.get('gpu_count')} x {machine.get('gpu_name')}"
                if machine.get("gpu_name") else "")]
    if versions:
        lines.append("versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()))
    return lines


def drop_empty_columns(columns: Sequence[str], rows: Sequence[Sequence[str]],
                       empty: str = "-") -> tuple[list[str], list[list[str]]]:
    """Columns with no value in any row (GPU memory on a CPU run) are left out."""
    keep = [i for i in range(len(columns))
            if i in (0, len(columns) - 1) or any(row[i] != empty for row in rows)]
    return [columns[i] for i in keep], [[row[i] for i in keep] for row in rows]
