"""Generative cases: prefill and greedy decode with a KV cache, on every backend that runs them.

``generators`` holds one generator per library's fast path, ``export`` the ONNX file with past
keys and values, ``timing`` the block loop (time to first token, time per output token),
``scoring`` the accuracy against FP32 PyTorch, and ``check`` the case's measure and accuracy
steps (the harness judges the result like any other case).
"""
