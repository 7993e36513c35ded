"""Hugging Face transformers models: seeded random configs and local model directories.

Nothing here touches a model hub: configs are built in code and checkpoints are read from a
local directory (``HF_HUB_OFFLINE`` is forced on while loading, so a typo cannot turn into a
download attempt).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.inputs import random_token_inputs, sample_sentences
from pytest_xfperf.models.spec import ModelSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

# Families whose forward accepts token_type_ids.
_TOKEN_TYPE_FAMILIES = {"bert", "roberta"}


def _hf_config(family: str, config: Mapping[str, Any]) -> Any:
    import transformers

    cls = transformers.AutoConfig.for_model(family, **config)
    # Eager attention: ONNX Runtime fuses Attention only for the TorchScript export of the
    # eager implementation (the SDPA export leaves it unfused).
    cls._attn_implementation = "eager"
    return cls


def _layers(config: Mapping[str, Any]) -> int:
    return int(config.get("num_hidden_layers", config.get("n_layers", 0)))


def random_weights_spec(
    name: str, family: str, config: Mapping[str, Any], seed: int, description: str
) -> ModelSpec:
    """A model from a config with seeded random weights: right for latency, not for accuracy."""

    def build() -> torch.nn.Module:
        import torch
        import transformers

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: torch.nn.Module = transformers.AutoModel.from_config(  # type: ignore[no-untyped-call]
                _hf_config(family, config), attn_implementation="eager"
            )
        return model.eval()

    vocab = int(config.get("vocab_size", 30522))
    with_tt = family in _TOKEN_TYPE_FAMILIES

    def make_inputs(batch: int, seq: int, input_seed: int) -> dict[str, np.ndarray]:
        return random_token_inputs(batch, seq, input_seed, vocab, with_token_type_ids=with_tt)

    identity = json.dumps({"family": family, "config": dict(config), "seed": seed}, sort_keys=True)
    return ModelSpec(
        name=name,
        build=build,
        make_inputs=make_inputs,
        identity=identity,
        family=family,
        num_heads=int(config.get("num_attention_heads", config.get("n_heads", 0))),
        hidden_size=int(config.get("hidden_size", config.get("dim", 0))),
        num_layers=_layers(config),
        description=description,
    )


def _positions(config: Mapping[str, Any]) -> int:
    return int(config.get("max_position_embeddings", config.get("n_positions", 0)) or 0)


def prompt_inputs(batch: int, prompt: int, seed: int, vocab_size: int) -> dict[str, np.ndarray]:
    """Seeded prompt tokens of one length, unpadded: every row of a generation batch starts
    decoding at the same position, as a batched greedy benchmark does."""
    import numpy as np

    rng = np.random.default_rng([seed, batch, prompt, 7])
    ids = rng.integers(1, vocab_size, size=(batch, prompt), dtype=np.int64)
    return {"input_ids": ids, "attention_mask": np.ones((batch, prompt), dtype=np.int64)}


def causal_lm_spec(
    name: str, family: str, config: Mapping[str, Any], seed: int, description: str
) -> ModelSpec:
    """A causal LM from a config with seeded random weights, SDPA attention (transformers'
    default, what a PyTorch user runs)."""

    def build() -> torch.nn.Module:
        import torch
        import transformers

        hf_config = transformers.AutoConfig.for_model(family, **config)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model: torch.nn.Module = transformers.AutoModelForCausalLM.from_config(  # type: ignore[no-untyped-call]
                hf_config, attn_implementation="sdpa")
        return model.eval()

    vocab = int(config.get("vocab_size", 32000))
    identity = json.dumps({"family": family, "config": dict(config), "seed": seed,
                           "head": "causal-lm"}, sort_keys=True)
    return ModelSpec(
        name=name, build=build,
        make_inputs=lambda batch, prompt, input_seed: prompt_inputs(batch, prompt, input_seed,
                                                                    vocab),
        identity=identity, family=family,
        num_heads=int(config.get("num_attention_heads", config.get("n_head", 0))),
        hidden_size=int(config.get("hidden_size", config.get("n_embd", 0))),
        num_layers=int(config.get("num_hidden_layers", config.get("n_layer", 0))),
        description=description, generative=True, max_positions=_positions(config),
    )


def is_causal_lm(config: Mapping[str, Any]) -> bool:
    """Whether a Hugging Face config.json describes a causal LM (its saved architecture)."""
    architectures = config.get("architectures") or []
    return any(str(a).endswith(("ForCausalLM", "LMHeadModel")) for a in architectures)


def _digest_dir(path: Path) -> str:
    """Digest of a checkpoint directory's files: the cache identity of a local model."""
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if file.name.startswith(".") or file.suffix == ".md":
            continue
        digest.update(file.relative_to(path).as_posix().encode())
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def local_dir_spec(path: Path, name: str | None = None, description: str = "") -> ModelSpec:
    """A model from a local Hugging Face directory (config.json + weights, tokenizer optional)."""
    path = path.resolve()
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ValueError(
            f"{path} is not a Hugging Face model directory: config.json is missing "
            "(save one with model.save_pretrained(DIR))"
        )
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ValueError(f"{config_file}: unreadable config ({exc})") from None
    family = str(config.get("model_type", ""))
    if is_causal_lm(config):
        return _local_causal_lm(path, config, name, description)
    has_tokenizer = any((path / f).is_file() for f in ("tokenizer.json", "vocab.txt"))
    vocab = int(config.get("vocab_size", 30522))
    with_tt = family in _TOKEN_TYPE_FAMILIES

    def build() -> torch.nn.Module:
        import transformers

        os.environ["HF_HUB_OFFLINE"] = "1"
        model: torch.nn.Module = transformers.AutoModel.from_pretrained(
            str(path), attn_implementation="eager"
        )
        return model.eval()

    tokenizer_cache: list[Any] = []

    def tokenize(texts: Sequence[str], seq: int) -> dict[str, np.ndarray]:
        import numpy as np

        if not tokenizer_cache:
            import transformers

            os.environ["HF_HUB_OFFLINE"] = "1"
            tokenizer_cache.append(transformers.AutoTokenizer.from_pretrained(str(path)))
        encoded = tokenizer_cache[0](
            list(texts), padding="max_length", truncation=True, max_length=seq, return_tensors="np"
        )
        names = ["input_ids", "attention_mask"] + (["token_type_ids"] if with_tt else [])
        return {k: np.asarray(encoded[k], dtype=np.int64) for k in names if k in encoded}

    def make_inputs(batch: int, seq: int, seed: int) -> dict[str, np.ndarray]:
        if has_tokenizer:
            return tokenize(sample_sentences(sentences(), batch, seed), seq)
        return random_token_inputs(batch, seq, seed, vocab, with_token_type_ids=with_tt)

    return ModelSpec(
        name=name or sanitize_name(path.name),
        build=build,
        make_inputs=make_inputs,
        identity="dir:" + _digest_dir(path),
        family=family,
        num_heads=int(config.get("num_attention_heads", config.get("n_heads", 0))),
        hidden_size=int(config.get("hidden_size", config.get("dim", 0))),
        num_layers=_layers(config),
        tokenize=tokenize if has_tokenizer else None,
        description=description or f"local checkpoint {path}",
    )


def _local_causal_lm(path: Path, config: Mapping[str, Any], name: str | None,
                     description: str) -> ModelSpec:
    def build() -> torch.nn.Module:
        import transformers

        os.environ["HF_HUB_OFFLINE"] = "1"
        model: torch.nn.Module = transformers.AutoModelForCausalLM.from_pretrained(
            str(path), attn_implementation="sdpa")
        return model.eval()

    vocab = int(config.get("vocab_size", 32000))
    return ModelSpec(
        name=name or sanitize_name(path.name), build=build,
        make_inputs=lambda batch, prompt, seed: prompt_inputs(batch, prompt, seed, vocab),
        identity="dir:" + _digest_dir(path), family=str(config.get("model_type", "")),
        num_heads=int(config.get("num_attention_heads", config.get("n_head", 0))),
        hidden_size=int(config.get("hidden_size", config.get("n_embd", 0))),
        num_layers=int(config.get("num_hidden_layers", config.get("n_layer", 0))),
        description=description or f"local causal LM {path}", generative=True,
        max_positions=_positions(config),
    )


def sanitize_name(text: str) -> str:
    """Turn a directory name into a safe test-id and file-name component."""
    cleaned = re.sub(r"[^a-z0-9._-]+", "-", text.lower()).strip("-._")
    return (cleaned or "model")[:64]
