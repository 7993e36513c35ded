"""Artifacts: export, optimization and quantization, cached by content."""
