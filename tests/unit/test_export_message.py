"""The export failure message: the failing operator, and the options there are."""

from pytest_xfperf.artifacts.export import export_failure_message


def test_export_failure_names_the_operator_and_the_options():
    exc = RuntimeError("Exporting the operator 'aten::fft_rfft' to ONNX opset version 17 is "
                       "not supported. Please feel free to request support")
    message = export_failure_message("mine", "torchscript", 17, exc)
    assert "The operator that failed: aten::fft_rfft." in message
    assert 'exporter = "dynamo"' in message and "--xfperf-exporter dynamo" in message
    assert "operator that failed" not in export_failure_message(
        "mine", "dynamo", 18, ValueError("shape mismatch"))
