import numpy as np
import pytest

from pytest_xfperf.accuracy import (
    DEFAULT_THRESHOLDS,
    compare,
    mean_pooled,
    retrieval_agreement,
    token_mask,
    violations,
)


def test_identical_outputs():
    x = np.random.default_rng(0).normal(size=(2, 5, 4)).astype(np.float32)
    m = compare(x, x.copy(), np.ones((2, 5), bool))
    assert m["cosine"] == pytest.approx(1.0) and m["max_abs_err"] == 0 and m["rel_l2"] == 0


def test_padding_positions_are_ignored():
    ref = np.ones((1, 4, 2), np.float32)
    out = ref.copy()
    out[0, 3] = 1e6  # garbage where the mask is 0
    mask = token_mask(np.array([[1, 1, 1, 0]]), out)
    assert compare(out, ref, mask)["max_abs_err"] == 0


def test_nan_output_fails_the_threshold():
    ref = np.ones((1, 2, 2), np.float32)
    out = ref.copy()
    out[0, 0, 0] = np.nan
    metrics = compare(out, ref, np.ones((1, 2), bool))
    assert violations(metrics, DEFAULT_THRESHOLDS["int8-dynamic"])


def test_thresholds_message_has_numbers():
    problems = violations({"cosine": 0.95, "rel_l2": 0.3}, DEFAULT_THRESHOLDS["int8-dynamic"])
    assert problems == ["cosine vs FP32 0.950000 < required 0.99",
                        "relative L2 error 0.3 > allowed 0.15"]


def test_mean_pooling_is_masked_and_normalized():
    hidden = np.array([[[1.0, 0.0], [0.0, 1.0], [100.0, 100.0]]])
    pooled = mean_pooled(hidden, np.array([[1, 1, 0]]))
    assert pooled == pytest.approx(np.array([[2 ** -0.5, 2 ** -0.5]]))


def test_retrieval_agreement_detects_reordering_but_tolerates_ties():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(50, 16))
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    assert retrieval_agreement(ref, ref) == 1.0
    scrambled = rng.normal(size=(50, 16))
    scrambled /= np.linalg.norm(scrambled, axis=1, keepdims=True)
    assert retrieval_agreement(scrambled, ref) < 0.5
    tiny_noise = ref + rng.normal(scale=1e-5, size=ref.shape)
    assert retrieval_agreement(tiny_noise, ref) == 1.0

