"""The power benchmark's encoder: BERT-shaped, seeded random weights, eager attention.

`gate_power.py` registers copies of it in a temporary project (copying this file beside that
project's conftest) and changes its layer count the way users change a model;
`session_level_probe.py` times it directly.
"""

from __future__ import annotations

from typing import Any

VOCAB = 2000


def build_encoder(layers: int, width: int, heads: int) -> Any:
    """The encoder, in evaluation mode; the same weights for the same shape every time."""
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(hidden_size=width, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=4 * width,
                        vocab_size=VOCAB, attn_implementation="eager")
    return BertModel(config).eval()


def encoder_inputs(batch: int, seq: int, seed: int) -> dict[str, Any]:
    """Seeded token ids, a full attention mask and one segment."""
    import numpy as np

    rng = np.random.default_rng(seed)
    ids = rng.integers(1, VOCAB, size=(batch, seq), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((batch, seq), dtype=np.int64),
            "token_type_ids": np.zeros((batch, seq), dtype=np.int64)}
