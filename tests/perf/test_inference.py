"""The shipped perf suite: `pytest --xfperf tests/perf` runs the matrix of [tool.xfperf]."""


def test_inference(xfperf):
    # check() fails this test itself, with the numbers, when the case regressed against its
    # baseline or missed its accuracy threshold.
    xfperf.check()
