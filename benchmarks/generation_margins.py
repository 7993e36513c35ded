"""Greedy generation of llama-small on the plugin's b1p128 prompt (seed 0), in FP32 and FP16
PyTorch on a GPU: the tokens, and the top-1 minus top-2 logit margin at each step. A margin
below FP16's resolution at the logits' scale is a near-tie that rounding may flip.

    python benchmarks/generation_margins.py     # writes $OUT/margin.json when OUT is set
"""
import json
import os
from pathlib import Path

import torch

from pytest_xfperf.models.registry import ModelRegistry

spec = ModelRegistry([], Path.cwd(), 0).get("llama-small")
model = spec.build().eval().cuda()
inputs = {k: torch.from_numpy(v).cuda() for k, v in spec.make_inputs(1, 128, 0).items()}
out = {}
for dtype in (torch.float32, torch.float16):
    m = model.to(dtype)
    with torch.inference_mode():
        g = m.generate(**inputs, max_new_tokens=16, do_sample=False, min_new_tokens=16,
                       output_scores=True, return_dict_in_generate=True, pad_token_id=0)
    scores = [s[0].float() for s in g.scores]
    top = [torch.topk(s, 2) for s in scores]
    out[str(dtype)] = {"tokens": g.sequences[0, 128:].tolist(),
                       "margin": [round(float(t.values[0] - t.values[1]), 5) for t in top]}
print(json.dumps(out, indent=1))
if os.environ.get("OUT"):
    Path(os.environ["OUT"], "margin.json").write_text(json.dumps(out, indent=1))
