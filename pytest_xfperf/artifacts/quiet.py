"""Silence the chatty loggers of exporters and optimizers for the duration of a build."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator


@contextlib.contextmanager
def quiet_build() -> Iterator[None]:
    # The ORT optimizer and quantizer log advice at WARNING on the root logger; restore the
    # user's levels afterwards rather than changing them for the whole session.
    loggers = [logging.getLogger(), logging.getLogger("onnxruntime")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)
