"""Seeded, deterministic model inputs with padding in the attention mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np


def random_token_inputs(
    batch: int,
    seq: int,
    seed: int,
    vocab_size: int,
    with_token_type_ids: bool = True,
) -> dict[str, np.ndarray]:
    """Random token ids; each row is padded to ``seq`` from a length in [3/4 seq, seq).

    Every row carries some padding (for seq > 1) so fused attention kernels see a real mask.
    """
    import numpy as np

    rng = np.random.default_rng([seed, batch, seq])
    low = 1000 if vocab_size > 2000 else 1
    input_ids = rng.integers(low, vocab_size, size=(batch, seq), dtype=np.int64)
    lengths = rng.integers(max(1, (3 * seq) // 4), max(2, seq), size=batch) if seq > 1 else [1]
    attention_mask = np.zeros((batch, seq), dtype=np.int64)
    for row, length in enumerate(lengths):
        attention_mask[row, : int(length)] = 1
    input_ids[attention_mask == 0] = 0
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if with_token_type_ids:
        inputs["token_type_ids"] = np.zeros((batch, seq), dtype=np.int64)
    return inputs


def sample_sentences(corpus: Sequence[str], batch: int, seed: int) -> list[str]:
    """Pick ``batch`` sentences deterministically, joining neighbours so rows are long enough."""
    import numpy as np

    rng = np.random.default_rng([seed, batch])
    picks = rng.integers(0, len(corpus), size=(batch, 6))
    return [" ".join(corpus[i] for i in row) for row in picks]
