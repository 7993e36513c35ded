from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from pytest_xfperf.artifacts.cache import ArtifactCache  # noqa: E402
from pytest_xfperf.artifacts.pipeline import ArtifactPipeline  # noqa: E402
from pytest_xfperf.models.builtin import BUILTIN  # noqa: E402


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("xfperf-cache")


@pytest.fixture(scope="session")
def pipeline(cache_dir: Path) -> ArtifactPipeline:
    return ArtifactPipeline(ArtifactCache(cache_dir), seed=0)


@pytest.fixture(scope="session")
def tiny_spec():
    return BUILTIN["bert-tiny"](0)


@pytest.fixture(scope="session")
def tiny_model(tiny_spec):
    return tiny_spec.build()
