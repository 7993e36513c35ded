"""pytester helpers: a project with user models, run in a subprocess like a real user's run."""

import json
import textwrap
from pathlib import Path

import pytest

pytest.importorskip("torch")

USER_MODELS = textwrap.dedent('''
    import os
    import numpy as np
    import torch
    from pytest_xfperf import ModelSpec

    class Stack(torch.nn.Module):
        """An encoder-shaped toy whose depth (and so its latency) the test controls."""
        def __init__(self, depth, width=256):
            super().__init__()
            self.embed = torch.nn.Embedding(1000, width)
            self.layers = torch.nn.ModuleList(torch.nn.Linear(width, width) for _ in range(depth))
        def forward(self, input_ids, attention_mask):
            x = self.embed(input_ids) * attention_mask.unsqueeze(-1)
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x

    class Transient(torch.nn.Module):
        """Slow (12x the work) for its first SLOW_CALLS calls in a process, then normal: a
        noisy neighbour that has left by the time the gate re-measures."""
        def __init__(self):
            super().__init__()
            self.stack = Stack(2)
            self.deep = Stack(24)
            self.calls = 0
        def forward(self, input_ids, attention_mask):
            self.calls += 1
            slow = self.calls <= int(os.environ.get("SLOW_CALLS", "0"))
            return (self.deep if slow else self.stack)(input_ids, attention_mask)

    class Outlier(torch.nn.Module):
        """One huge activation channel: dynamic INT8 crushes the others (a real failure)."""
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(1000, 64)
            self.proj = torch.nn.Linear(64, 64)
            with torch.no_grad():
                self.embed.weight[:, 0] = 1e4
                self.proj.weight[:, 0] = 0
        def forward(self, input_ids, attention_mask):
            return self.proj(self.embed(input_ids))

    class Unexportable(torch.nn.Module):
        """Uses an operator the ONNX exporter has no conversion for."""
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)
        def forward(self, input_ids, attention_mask):
            x = self.lin(input_ids.float().unsqueeze(-1).expand(-1, -1, 8))
            return torch.special.bessel_j0(x)

    def inputs(batch, seq, seed):
        rng = np.random.default_rng(seed)
        ids = rng.integers(1, 1000, size=(batch, seq), dtype=np.int64)
        mask = np.ones((batch, seq), dtype=np.int64)
        mask[:, seq * 3 // 4:] = 0
        return {"input_ids": ids, "attention_mask": mask}

    def seeded(factory):
        def build():
            torch.manual_seed(0)
            return factory().eval()
        return build

    def pytest_xfperf_models(config):
        depth = int(os.environ.get("STACK_DEPTH", "2"))
        return [
            ModelSpec(name="stack", build=seeded(lambda: Stack(depth)), make_inputs=inputs,
                      identity=f"stack-{depth}", family=""),
            ModelSpec(name="transient", build=seeded(Transient), make_inputs=inputs,
                      identity="transient", family=""),
            ModelSpec(name="outlier", build=seeded(Outlier), make_inputs=inputs,
                      identity="outlier", family=""),
            ModelSpec(name="unexportable", build=seeded(Unexportable), make_inputs=inputs,
                      identity="unexportable", family=""),
        ]
''')

PERF_TEST = textwrap.dedent('''
    def test_inference(xfperf):
        xfperf.check()
''')

# The 2-core CI host drifts by +-25 % between identical runs; these tests check the flow, so
# the timing tolerance is wide. The gate arithmetic at 10 % is pinned by tests/unit/test_gate.py,
# and the deliberate slowdown below (12x the layers, +700 % or more) still has to fail.
FAST = ["--xfperf-min-time", "0.2", "--xfperf-min-rounds", "20", "--xfperf-warmup-rounds", "3",
        "--xfperf-tolerance", "150%", "-p", "no:cacheprovider"]


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(USER_MODELS)
    pytester.makepyfile(test_perf=PERF_TEST)
    pytester.makefile(".toml", pyproject=textwrap.dedent('''
        [tool.xfperf]
        models = ["stack"]
        backends = ["torch-cpu"]
        precisions = ["fp32"]
        shapes = ["8x64"]
    '''))
    return pytester


def baseline_file(pytester: pytest.Pytester) -> Path:
    files = list((pytester.path / "baselines").glob("*.json"))
    assert len(files) == 1, files
    return files[0]


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


def run_both(project: pytest.Pytester, *args: str, depth: int = 2) -> pytest.RunResult:
    """The project's model at ``depth`` layers on torch-cpu and ort-cpu, as a user runs it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACK_DEPTH", str(depth))
        return project.runpytest_subprocess("--xfperf", *FAST, "--xfperf-backends",
                                            "torch-cpu,ort-cpu", *args)
