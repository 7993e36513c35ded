"""The perf test that benchmarks/generation_figures.py runs: the plugin's own case, then, in
the same process, a greedy loop written by hand over the very ONNX Runtime session the plugin
timed (numpy feeds, one ``session.run`` a step, the wall clock around the decode steps, the
garbage collector off while timing, as ``timeit`` does). Each ONNX Runtime case appends one
JSON line to $XFPERF_HAND_OUT."""

import gc
import json
import os
import statistics
import time

import numpy as np

GENERATIONS = 20


def hand_loop(session, ids, new_tokens):
    batch, prompt = ids.shape
    inputs = session.get_inputs()
    names = [i.name for i in inputs if i.name.startswith("past.")]
    shape = inputs[3].shape
    dtype = np.float16 if "float16" in inputs[3].type else np.float32
    empty = np.zeros((batch, int(shape[1]), 0, int(shape[3])), dtype=dtype)
    gc.collect()
    gc.disable()
    try:
        timed = _generations(session, ids, new_tokens, names, empty)
    finally:
        gc.enable()
    ttfts, tpots = timed
    return {"ttft_ms": statistics.median(ttfts[1:]), "tpot_ms": statistics.median(tpots[1:]),
            "generations": GENERATIONS}


def _generations(session, ids, new_tokens, names, empty):
    batch, prompt = ids.shape
    ttfts, tpots = [], []
    for _ in range(GENERATIONS + 1):  # the first one warms up
        feeds = {"input_ids": ids, "attention_mask": np.ones((batch, prompt), np.int64),
                 "position_ids": np.tile(np.arange(prompt, dtype=np.int64), (batch, 1)),
                 **dict.fromkeys(names, empty)}
        started = time.perf_counter()
        out = session.run(None, feeds)
        first = time.perf_counter()
        for step in range(new_tokens - 1):
            total = prompt + step + 1
            feeds = {"input_ids": out[1].reshape(batch, 1).astype(np.int64),
                     "attention_mask": np.ones((batch, total), np.int64),
                     "position_ids": np.full((batch, 1), total - 1, np.int64),
                     **dict(zip(names, out[2:], strict=True))}
            out = session.run(None, feeds)
        done = time.perf_counter()
        ttfts.append((first - started) * 1000)
        tpots.append((done - first) * 1000 / (new_tokens - 1))
    return ttfts, tpots


def test_inference(xfperf):
    result = xfperf.check()
    session = getattr(xfperf.generator, "session", None)
    if session is None or xfperf.generator.device != "cpu":
        return  # the hand loop is written for ONNX Runtime on the CPU
    hand = hand_loop(session, xfperf.inputs["input_ids"], result.case.shape.new_tokens)
    line = {"case": result.case.id, "plugin": result.generation_metrics, "hand": hand}
    with open(os.environ["XFPERF_HAND_OUT"], "a", encoding="utf-8") as handle:
        handle.write(json.dumps(line) + "\n")
