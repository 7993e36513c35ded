"""Models that come from disk: a user's Hugging Face directory and the bundled MiniLM."""

from pathlib import Path

import numpy as np
import pytest
import transformers

from pytest_xfperf.accuracy import mean_pooled, retrieval_agreement
from pytest_xfperf.backends.onnxruntime_cpu import OrtCpuRunner
from pytest_xfperf.models.builtin import BUILTIN
from pytest_xfperf.models.corpus import sentences
from pytest_xfperf.models.hf import local_dir_spec
from pytest_xfperf.models.registry import ModelRegistry


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    torch.manual_seed(0)
    config = transformers.RobertaConfig(hidden_size=64, num_hidden_layers=1,
                                        num_attention_heads=2, intermediate_size=128,
                                        vocab_size=500, max_position_embeddings=300)
    directory = tmp_path_factory.mktemp("my-roberta")
    transformers.RobertaModel(config).save_pretrained(directory)
    return directory


def test_local_directory_runs_through_the_pipeline(hf_dir, pipeline):
    spec = local_dir_spec(hf_dir)
    assert spec.family == "roberta" and spec.identity and spec.identity.startswith("dir:")
    assert local_dir_spec(hf_dir).identity == spec.identity  # stable digest
    artifact = pipeline.build(spec, "fp32", spec.build)
    assert artifact.graph["fused"].get("Attention") == 1
    inputs = spec.make_inputs(2, 20, 0)
    assert OrtCpuRunner(artifact.path).run(inputs).shape == (2, 20, 64)


def test_registry_resolves_paths_and_rejects_unknown_names(hf_dir, tmp_path):
    registry = ModelRegistry([], tmp_path, 0)
    assert registry.case_name(str(hf_dir)).startswith("my-roberta")
    with pytest.raises(ValueError, match="unknown model 'bert-huge'; valid models: bert-base"):
        registry.check(["bert-huge"])
    with pytest.raises(ValueError, match="does not exist"):
        registry.check(["./nowhere"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="config.json is missing"):
        registry.check(["./empty"])


def test_minilm_has_real_weights_and_tokenizer(pipeline):
    spec = BUILTIN["minilm-l6"](0)
    assert spec.tokenize is not None
    runner = OrtCpuRunner(pipeline.build(spec, "fp32", spec.build).path)
    texts = list(sentences()[:10])
    inputs = spec.tokenize(texts, 64)
    embeddings = mean_pooled(runner.run(inputs), inputs["attention_mask"])
    similarity = embeddings @ embeddings.T
    # Real weights: paraphrases (the corpus groups them by five) are closer than strangers.
    assert similarity[0, 1:5].mean() > similarity[0, 5:10].mean() + 0.2
    assert retrieval_agreement(embeddings, embeddings) == 1.0
    assert np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-5)
