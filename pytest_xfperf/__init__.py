"""pytest-xfperf: performance-regression tests for transformer inference pipelines.

The public surface is what ``__all__`` lists; every other module is an implementation detail.
Importing this package imports no ML library.
"""

from pytest_xfperf.backends.base import Runner
from pytest_xfperf.matrix import Case
from pytest_xfperf.models.spec import ModelSpec
from pytest_xfperf.result import Result
from pytest_xfperf.settings import Settings, Tolerances
from pytest_xfperf.values import Shape

__version__ = "0.1.0"

__all__ = ["Case", "ModelSpec", "Result", "Runner", "Settings", "Shape", "Tolerances",
           "__version__"]
