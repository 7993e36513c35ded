"""What each backend can run, as plain data: cheap to import at plugin load."""

from __future__ import annotations

from dataclasses import dataclass

PRECISIONS = ("fp32", "int8-dynamic")
REFERENCE_BACKEND = "torch-cpu"
REFERENCE_PRECISION = "fp32"


@dataclass(frozen=True)
class BackendInfo:
    name: str
    precisions: tuple[str, ...]
    device: str  # "cpu" or "cuda": cases on one device are never timed concurrently
    modules: tuple[str, ...]  # importable modules it needs
    extra: str  # the pip extra that provides them
    uses_onnx: bool

    def unsupported_reason(self, precision: str) -> str | None:
        if precision in self.precisions:
            return None
        return f"{self.name} does not run {precision} (it runs {', '.join(self.precisions)})"


BACKENDS: dict[str, BackendInfo] = {
    b.name: b
    for b in (
        BackendInfo("torch-cpu", ("fp32",), "cpu", ("torch", "transformers"), "cpu", False),
        BackendInfo(
            "ort-cpu", ("fp32", "int8-dynamic"), "cpu",
            ("torch", "transformers", "onnx", "onnxruntime"), "cpu", True,
        ),
    )
}
