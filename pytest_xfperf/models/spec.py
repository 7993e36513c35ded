"""The public description of a model under test."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

Inputs = Mapping[str, "np.ndarray"]
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ModelSpec:
    """How to build a model and its inputs; everything the pipelines need to know.

    ``build`` returns a ``torch.nn.Module`` in eval mode whose ``forward`` takes the input
    names of ``make_inputs`` as keyword arguments and returns a tensor, a tuple whose first item
    is the tensor, or a Hugging Face output with ``last_hidden_state``.

    ``make_inputs(batch, seq, seed)`` returns int64 numpy arrays keyed by input name; it must be
    deterministic for a given seed, and an ``attention_mask`` should contain padding so that the
    backends are compared on realistic masks.

    ``identity`` is what the artifact cache keys on (config and seed for random weights, a
    digest of the weight files for a checkpoint). Leave it ``None`` to key on a hash of the
    built module's weights, which is always right but costs one build.

    ``family`` selects ONNX Runtime's transformer fusions ("bert", "roberta", "distilbert", ...;
    "" for none); ``num_heads``/``hidden_size`` of 0 let the optimizer detect them.
    ``num_layers`` (0: unknown) sets the fused-operator counts expected of a full fusion.

    ``tokenize(texts, seq)``, when given, turns sentences into inputs: it enables the
    retrieval-agreement accuracy check on the bundled sentence corpus.

    A ``generative`` model is a causal language model: ``build`` returns a module like a
    Hugging Face ``*ForCausalLM`` (``forward(input_ids, attention_mask, position_ids,
    past_key_values, use_cache)`` returning ``logits`` and ``past_key_values``), its
    ``make_inputs`` returns the prompt's ``input_ids`` and ``attention_mask``, and its shapes
    are written bBATCHpPROMPTnNEW. ``max_positions`` (0: unknown) bounds prompt plus new tokens.
    """

    name: str
    build: Callable[[], torch.nn.Module]
    make_inputs: Callable[[int, int, int], dict[str, np.ndarray]]
    identity: str | None = None
    family: str = "bert"
    num_heads: int = 0
    hidden_size: int = 0
    num_layers: int = 0
    tokenize: Callable[[Sequence[str], int], dict[str, np.ndarray]] | None = None
    description: str = ""
    extra: Mapping[str, Any] | None = None
    generative: bool = False
    max_positions: int = 0

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(
                f"model name {self.name!r} is not allowed: use 1-64 lowercase letters, digits, "
                "'.', '_' or '-', starting with a letter or digit (it becomes part of test ids "
                "and file names)"
            )
        if not callable(self.build) or not callable(self.make_inputs):
            raise ValueError(f"model {self.name!r}: build and make_inputs must be callables")
