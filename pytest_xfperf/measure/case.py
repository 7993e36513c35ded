"""Measuring one case: the only place that runs the yardstick and the PyTorch reference.

The case's blocks alternate with the yardstick's (measure/blocks.py) under the device lock,
round after round while the gate's stopping rule asks for more. The PyTorch reference of the
speed-up (PyTorch on the case's device) is measured the same way once per session for each
model, shape and device, by whichever case needs it first: under pytest-xdist every worker
measures its own, so no case depends on another having run before it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_xfperf.backends.base import BackendUnavailable, Runner
from pytest_xfperf.backends.catalog import BACKENDS, pace_fields
from pytest_xfperf.baselines.rule import GatePolicy
from pytest_xfperf.measure.blocks import BlockPlan, Series, Timed, measure
from pytest_xfperf.measure.pace import Pace, probe
from pytest_xfperf.measure.yardstick import FACTORIES, Yardstick, case_threads

if TYPE_CHECKING:
    import contextlib


# The stopping rule, asked after each round with the case's record so far, the PyTorch
# reference's (None where there is none) and whether no further round is allowed: True stops.
StopRule = Callable[[Mapping[str, Any], Mapping[str, Any] | None, bool], bool]
# The PyTorch reference's record with at least this many blocks (measured or extended now).
ReferenceSource = Callable[[int], "dict[str, Any] | None"]


# What an eager GPU case's record may name as its pacing: its launches, or its GPU work.
EAGER_PACINGS = ("eager", "device")
# An eager GPU case whose GPU work paces it (measure/pace.py) is timed beside the GPU's
# matrix products, as a captured replay is, not beside the launch yardstick.
DEVICE_PACED_YARDSTICK = "cuda"


@dataclass(frozen=True)
class EagerPacing:
    """What paces an eager GPU case ("eager": its launches; "device": its GPU work), and
    this run's probe of it (where the name was kept from the baseline, the probe may say
    otherwise: the record shows both)."""

    name: str
    pace: Pace


def block_record(series: Series, yardstick: Yardstick | None, backend: str,
                 pacing: EagerPacing | None = None) -> dict[str, Any]:
    """The series of a case on ``backend`` as a baseline stores it (and as the gate compares
    it); a device-clock series says what paces the backend's calls (``pacing``: what an
    eager case's probe found, or kept from its baseline)."""
    record: dict[str, Any] = {"clock": series.clock, "case_ms": list(series.case_ms),
                              **pace_fields(series.clock, backend)}
    if pacing is not None and series.clock == "device":
        record["pacing"] = pacing.name
        record["pace_ms"] = {"launched": pacing.pace.launched_ms,
                             "finished": pacing.pace.finished_ms}
    if yardstick is not None and series.yardstick_ms:
        record.update(yardstick=yardstick.identity, yardstick_ms=list(series.yardstick_ms))
    return record


def make_yardstick(backend: str, options: Mapping[str, Any], pacing: str | None = None
                   ) -> Yardstick | None:
    """The backend's device's yardstick on the case's threads (the GPU's matrix products for
    an eager case its GPU work paces), or None where it cannot be built (no onnxruntime: the
    case is compared on its own times, and its record says so)."""
    kind = DEVICE_PACED_YARDSTICK if pacing == "device" else BACKENDS[backend].yardstick
    try:
        return FACTORIES[kind](case_threads(options))
    except (ImportError, RuntimeError, BackendUnavailable):
        return None


def eager_pacing(runner: Runner, call: Callable[[], object], policy: GatePolicy,
                 baseline_pacing: str | None) -> EagerPacing | None:
    """What paces an eager GPU case: "device" where its GPU work outlasts its launches past
    the host's routine move, else "eager" (measure/pace.py), with the probe's figures. A
    gated run keeps the choice its baseline made, so that both time the same yardstick; a
    recording, or a baseline from before the choice, goes by the probe. None for every
    other backend."""
    info = BACKENDS.get(runner.name)
    if info is None or info.pacing != "eager" or not _on_gpu(runner):
        return None
    pace = probe(call, runner.synchronize, policy.pace_probe_calls)
    if baseline_pacing in EAGER_PACINGS:
        return EagerPacing(baseline_pacing, pace)
    return EagerPacing("device" if pace.paced_by_device(policy.host_move_covered) else "eager",
                       pace)


def time_series(runner: Runner, call: Callable[[], object], yardstick: Yardstick | None,
                plan: BlockPlan, blocks: int, series: Series | None = None) -> Series:
    device = series.clock == "device" if series is not None else _on_gpu(runner)
    series = series or Series(clock="device" if device else "wall")
    target = Timed(call, runner.synchronize, device)
    stick = (Timed(yardstick.call, yardstick.synchronize, yardstick.device)
             if yardstick is not None else None)
    measure(series, target, stick, plan, blocks)
    return series


def _on_gpu(runner: Runner) -> bool:
    return BACKENDS[runner.name].device == "cuda" if runner.name in BACKENDS else False


class CaseMeasurement:
    """Times ``runner`` on its prepared call; owns the case's yardstick for its lifetime."""

    def __init__(self, runner: Runner, call: Callable[[], object], options: Mapping[str, Any],
                 plan: BlockPlan, policy: GatePolicy,
                 lock: Callable[[], contextlib.AbstractContextManager[None]]) -> None:
        self._runner, self._call, self._plan, self._policy = runner, call, plan, policy
        self._options, self._lock = options, lock
        self._yardstick: Yardstick | None = None
        self._pacing: EagerPacing | None = None

    def run(self, stop: StopRule, reference: ReferenceSource | None, recording: bool,
            baseline_pacing: str | None = None
            ) -> tuple[Series, dict[str, Any], dict[str, Any] | None, int]:
        """Rounds of blocks until ``stop`` is satisfied (or the policy's maximum); after each
        round the PyTorch reference is brought to as many blocks as the case has. A recording
        takes the policy's record_blocks in one round. ``baseline_pacing``: the pacing the
        baseline entry's record names (an eager GPU case keeps it)."""
        policy = self._policy
        first = policy.record_blocks if recording else policy.first_blocks
        rounds = 1
        while True:
            with self._lock():
                if rounds == 1:
                    self._pacing = eager_pacing(self._runner, self._call, policy,
                                                None if recording else baseline_pacing)
                    self._yardstick = make_yardstick(
                        self._runner.name, self._options,
                        self._pacing.name if self._pacing is not None else None)
                    series = time_series(self._runner, self._call, self._yardstick,
                                         self._plan, first)
                else:
                    time_series(self._runner, self._call, self._yardstick, self._plan,
                                policy.round_blocks, series)
            record = block_record(series, self._yardstick, self._runner.name, self._pacing)
            eager = reference(series.blocks) if reference is not None else None
            final = recording or series.blocks + policy.round_blocks > policy.max_blocks
            if final or stop(record, eager, final):
                return series, record, eager, rounds
            rounds += 1

    def close(self) -> None:
        if self._yardstick is not None:
            self._yardstick.close()
            self._yardstick = None


def extend_reference(record: dict[str, Any] | None, runner: Runner, call: Callable[[], object],
                     options: Mapping[str, Any], plan: BlockPlan, blocks: int,
                     lock: Callable[[], contextlib.AbstractContextManager[None]]
                     ) -> dict[str, Any]:
    """The PyTorch reference's block record (with its own yardstick), with ``blocks`` more
    blocks of its prepared ``call`` measured now and appended to ``record`` (None: a new
    record)."""
    yardstick = make_yardstick(runner.name, options)
    try:
        series = Series(clock=record["clock"]) if record else None
        with lock():
            series = time_series(runner, call, yardstick, plan, blocks, series)
        added = block_record(series, yardstick, runner.name)
    finally:
        if yardstick is not None:
            yardstick.close()
    return merged_record(record, added, runner.name)


def merged_record(record: Mapping[str, Any] | None, added: Mapping[str, Any], reference: str
                  ) -> dict[str, Any]:
    """A reference's block record: ``added`` blocks after ``record``'s where both timed the
    same yardstick (else ``added`` alone), marked with the ``reference`` backend."""
    merged = dict(added)
    if record is not None and record.get("yardstick") == added.get("yardstick"):
        merged["case_ms"] = [*record["case_ms"], *added["case_ms"]]
        if "yardstick_ms" in added:
            merged["yardstick_ms"] = [*record.get("yardstick_ms", []), *added["yardstick_ms"]]
    merged["reference"] = reference
    return merged
