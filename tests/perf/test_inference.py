"""The shipped perf suite: `pytest --xfperf tests/perf` runs the matrix of [tool.xfperf]."""


def test_inference(xfperf):
    result = xfperf.check()
    assert result.case.id == xfperf.case.id
