"""The graph fingerprint gate: optimization drift read off the graph, not off the clock.

A baseline entry keeps its artifact's fingerprint (fused-operator counts, operator histogram,
quantization coverage, opset, the library versions that built it). A later run whose graph
lost fusions, quantizes fewer weight products or falls back to more FP32 ones fails with a
diff, whatever its timing says: one graph comparison decides, no noise involved.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ARROW = "→"
MAX_LISTED = 8


def _version_note(then: Mapping[str, str], now: Mapping[str, str]) -> str:
    changed = [f"{lib} {then[lib]} {ARROW} {now[lib]}" for lib in sorted(then)
               if lib in now and then[lib] and now[lib] and then[lib] != now[lib]]
    if changed:
        return "(" + ", ".join(changed) + ")"
    return "(same library versions: the export settings or the model changed)"


def drift(
    baseline_graph: Mapping[str, Any],
    current_graph: Mapping[str, Any],
    baseline_versions: Mapping[str, str] | None = None,
) -> list[str]:
    """Readable problems, e.g. ``Attention 12 → 0 (onnxruntime 1.31 → 1.32)``; [] when none.

    Only losses count: more fusion or more quantization is an improvement, not drift.
    """
    problems: list[str] = []
    then_fused = baseline_graph.get("fused") or {}
    now_fused = current_graph.get("fused") or {}
    for op in sorted(then_fused):
        before, after = int(then_fused[op]), int(now_fused.get(op, 0))
        if after < before:
            problems.append(f"{op} {before} {ARROW} {after}")
    then_q = baseline_graph.get("quantization") or {}
    now_q = current_graph.get("quantization") or {}
    if then_q and now_q:
        before = int(then_q.get("quantized_matmuls", 0))
        after = int(now_q.get("quantized_matmuls", 0))
        share_before = float(then_q.get("quantized_share", 0.0))
        share_after = float(now_q.get("quantized_share", 0.0))
        if after < before or share_after < share_before - 1e-4:
            problems.append(f"quantized MatMuls {before} {ARROW} {after} "
                            f"(share {share_before:.0%} {ARROW} {share_after:.0%})")
        fp_before = int(then_q.get("float_matmuls", 0))
        fp_after = int(now_q.get("float_matmuls", 0))
        if fp_after > fp_before:
            problems.append(f"FP32 weight MatMuls {fp_before} {ARROW} {fp_after} "
                            "(new float fallbacks)")
    elif then_q and not now_q:
        problems.append("the graph is no longer quantized")
    if not problems:
        return []
    then_versions = baseline_graph.get("built_with") or baseline_versions or {}
    note = _accuracy_note(then_q, now_q) or _version_note(
        then_versions, current_graph.get("built_with") or {})
    return [f"{p} {note}" for p in problems]


def _accuracy_note(then_q: Mapping[str, Any], now_q: Mapping[str, Any]) -> str:
    """Why a quantized build kept more products in FP32, where it says it was for accuracy:
    the INT8 recipe leaves groups in FP32 until its output cosine on the calibration batches
    reaches the bar, measured with this CPU's kernels, so one CPU kind can need a fallback
    that the baseline's build did not."""
    groups = str(now_q.get("fp32_groups") or "")
    if not groups or groups == str(then_q.get("fp32_groups") or ""):
        return ""
    cosine = now_q.get("calibration_cosine")
    reached = f" (cosine {float(cosine):.5f})" if cosine is not None else ""
    before = then_q.get("fp32_groups")
    was = f"; the baseline's left {before}" if before else (
        "; the baseline's left none" if "fp32_groups" in then_q else "")
    return (f"(this build left {groups} in FP32 to reach the accuracy bar on its "
            f"calibration batches{reached}{was}: INT8 kernels differ with the CPU; if that "
            "is expected here, record the baseline again with --xfperf-update-baselines)")


def graph_notes(baseline_graph: Mapping[str, Any], current_graph: Mapping[str, Any]) -> list[str]:
    """Changes worth showing that are not failures (an opset change, new operator types)."""
    notes = []
    before, after = baseline_graph.get("opset"), current_graph.get("opset")
    if before and after and before != after:
        notes.append(f"opset {before} {ARROW} {after}")
    then_ops = set(baseline_graph.get("ops") or {})
    now_ops = set(current_graph.get("ops") or {})
    new = sorted(now_ops - then_ops) if then_ops and now_ops else []
    if new:
        shown = ", ".join(new[:MAX_LISTED]) + (f" and {len(new) - MAX_LISTED} more"
                                                if len(new) > MAX_LISTED else "")
        notes.append("new operator types: " + shown)
    return notes
