"""Serving scenarios: requests of varied lengths arriving over time, a dynamic batcher, and
the single-stream / offline / server scenarios of MLPerf LoadGen built on them.

Nothing here imports torch or a backend: a scenario drives any ``execute(inputs) -> outputs``
callable, so the batcher and the load generator are tested (and their overhead measured)
without a model.
"""
