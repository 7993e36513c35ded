"""pytest hooks and fixtures. Everything else lives in the modules these delegate to.

Import cost matters here: this module is loaded by every pytest run in an environment where
the plugin is installed, so it imports nothing heavy (no torch, onnx, onnxruntime, tensorrt).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import pytest

from pytest_xfperf.settings import OPTIONS, Settings, argparse_type, read_pyproject, resolve

MARKER_HELP = (
    "xfperf(models=..., backends=..., precisions=..., shapes=..., scenarios=..., tolerance=..., "
    "tolerances={...}): override the perf matrix or the tolerances for one test"
)


@dataclass
class PluginState:
    settings: Settings
    session: Any = None  # XfperfSession, created on first use (it loads baselines)
    usage_errors: list[str] = field(default_factory=list)
    registry: Any = None
    worker_outputs: list[dict[str, Any]] = field(default_factory=list)  # xdist controller


STATE = pytest.StashKey[PluginState]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_xfperf import hookspec

    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("xfperf", "transformer inference performance regression tests")
    group.addoption("--xfperf", action="store_true", default=False,
                    help="run the perf tests (without it they are skipped)")
    for option in OPTIONS:
        if option.flag:
            group.addoption(option.cli, action="store_true", default=None, dest=option.dest,
                            help=option.help)
        else:
            group.addoption(option.cli, dest=option.dest, type=argparse_type(option),
                            default=None, help=option.help)
        parser.addini(option.dest, option.help, default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER_HELP)
    enabled = bool(config.getoption("xfperf"))
    if not enabled:
        config.stash[STATE] = PluginState(settings=Settings(enabled=False))
        return
    try:
        settings = resolve(
            cli={o.key: config.getoption(o.dest) for o in OPTIONS},
            ini={o.key: config.getini(o.dest) for o in OPTIONS},
            pyproject=read_pyproject(config.rootpath),
            enabled=True,
        )
        from pytest_xfperf.backends.catalog import BACKENDS, PRECISIONS
        from pytest_xfperf.values import check_known

        check_known("backend", settings.matrix.backends, BACKENDS)
        check_known("precision", settings.matrix.precisions, PRECISIONS)
    except ValueError as exc:
        raise pytest.UsageError(f"pytest-xfperf: {exc}") from None
    # --benchmark-disable asks for accuracy only. pytest-benchmark also disables itself under
    # xdist; that must not turn timing off, so its own flag is read, not its fixture's state.
    timing_disabled = bool(config.getoption("benchmark_disable", default=False))
    if timing_disabled and settings.gate.update_baselines:
        raise pytest.UsageError(
            "pytest-xfperf: --xfperf-update-baselines with --benchmark-disable would record "
            "nothing (timing is off): drop --benchmark-disable to record baselines")
    settings = replace(settings, timing_disabled=timing_disabled)
    worker = getattr(config, "workerinput", None)
    if worker is not None:
        _pin_gpu_to_worker(worker)
    config.stash[STATE] = PluginState(settings=settings)


def _pin_gpu_to_worker(workerinput: dict[str, Any]) -> None:
    """With several GPUs, xdist worker gwN sees GPU N mod count only (set before any CUDA
    initialisation; a CUDA_VISIBLE_DEVICES the user set is respected)."""
    import os
    from pathlib import Path

    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return
    gpus_dir = Path("/proc/driver/nvidia/gpus")
    count = len(list(gpus_dir.iterdir())) if gpus_dir.is_dir() else 0
    worker_id = str(workerinput.get("workerid", "gw0"))
    if count > 1 and worker_id[2:].isdigit():
        os.environ["CUDA_VISIBLE_DEVICES"] = str(int(worker_id[2:]) % count)


def _state(config: pytest.Config) -> PluginState:
    return config.stash[STATE]


def _session(config: pytest.Config) -> Any:
    state = _state(config)
    if state.session is None:
        from pytest_xfperf.baselines.store import BaselineError
        from pytest_xfperf.history.db import HistoryError
        from pytest_xfperf.session import XfperfSession

        try:
            state.session = XfperfSession(state.settings, _registry(config), config.rootpath)
        except (BaselineError, HistoryError) as exc:
            raise pytest.UsageError(f"pytest-xfperf: {exc}") from None
    return state.session


def _registry(config: pytest.Config) -> Any:
    """Model registry with the user specs of every conftest loaded so far."""
    from pytest_xfperf.models.registry import ModelRegistry

    state = _state(config)
    specs = [spec for specs in config.hook.pytest_xfperf_models(config=config) for spec in specs]
    if state.registry is None:
        state.registry = ModelRegistry(specs, config.rootpath, state.settings.seed)
    else:
        state.registry.add_user_specs(specs)
    return state.registry


def pytest_sessionstart(session: pytest.Session) -> None:
    if _state(session.config).settings.enabled:
        xsession = _session(session.config)  # a corrupt baseline stops the run before work
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        capture = session.config.pluginmanager.get_plugin("capturemanager")
        if session.config.get_verbosity() > 0 and reporter is not None:
            # Long steps (builds, calibration, serving passes) say what they are doing, past
            # output capture (which holds the test's own output until it ends).
            def announce(line: str) -> None:
                if capture is None:
                    reporter.write_line(line)
                    return
                with capture.global_and_fixture_disabled():
                    reporter.write_line(line)

            xsession.announce = announce


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "xfperf_case" not in metafunc.fixturenames:
        return
    state = _state(metafunc.config)
    if not state.settings.enabled:
        metafunc.parametrize("xfperf_case", [pytest.param(
            None, id="xfperf-off",
            marks=pytest.mark.skip(reason="perf test: run pytest with --xfperf"))])
        return
    from pytest_xfperf.matrix import expand, parse_marker, with_marker_tolerances

    settings = state.settings
    marker = metafunc.definition.get_closest_marker("xfperf")
    try:
        overrides = parse_marker(marker.kwargs, metafunc.definition.nodeid) if marker else {}
        registry = _registry(metafunc.config)
        matrix = settings.matrix
        models = overrides.get("models", matrix.models)
        registry.check(models)
        cases = expand(
            [(ref, registry.case_name(ref)) for ref in models],
            overrides.get("backends", matrix.backends),
            overrides.get("precisions", matrix.precisions),
            overrides.get("shapes", matrix.shapes),
            overrides.get("scenarios", matrix.scenarios),
            registry.generative(models),
        )
        cases = with_marker_tolerances(cases, settings.gate.tolerances, overrides)
    except ValueError as exc:
        # Raised from here it would become a collection error; a usage error (exit 4) is
        # what a bad name is, so it is raised once collection ends.
        state.usage_errors.append(f"pytest-xfperf: {exc}")
        metafunc.parametrize("xfperf_case", [pytest.param(None, id="invalid")])
        return
    metafunc.parametrize("xfperf_case", cases, ids=[c.id for c in cases])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = _state(config)
    errors = state.usage_errors
    if errors:
        raise pytest.UsageError("\n".join(dict.fromkeys(errors)))
    if state.settings.enabled and state.settings.shard is not None:
        _keep_shard(config, items)


def _keep_shard(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect the items of the other shards (shard.py has the rule); items that are not
    perf cases run in shard 1."""
    from pytest_xfperf.shard import digest, partition, recorded_costs

    settings = _state(config).settings
    spec = settings.shard
    assert spec is not None
    cases = {item.nodeid: item.callspec.params.get("xfperf_case")
             for item in items if hasattr(item, "callspec")}
    cases = {node: case for node, case in cases.items() if case is not None}
    groups: dict[str, list[str]] = {}
    for node, case in cases.items():
        groups.setdefault(f"{case.model} {case.shape.label}", []).append(node)
    from pytest_xfperf.settings import history_file

    costs, source = recorded_costs(config.rootpath / settings.baselines_dir,
                                   history_file(settings, config.rootpath),
                                   sorted({c.id for c in cases.values()}))
    node_costs = {node: 0.0 if case.skip_reason else costs[case.id]
                  for node, case in cases.items()}
    assignment = partition(groups, node_costs, spec.count)
    keep = [item for item in items if assignment.get(item.nodeid, 1) == spec.index]
    dropped = [item for item in items if assignment.get(item.nodeid, 1) != spec.index]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
    items[:] = keep
    mine = [node for node, shard in assignment.items() if shard == spec.index]
    _session(config).shard = {
        "index": spec.index, "count": spec.count, "partition": digest(assignment),
        "matrix": digest(dict.fromkeys(assignment, 0)),  # the same on every shard of it
        "cases": len(assignment), "selected": len(mine), "costs": source,
        "cost_s": round(sum(node_costs[n] for n in mine), 2),
        "total_cost_s": round(sum(node_costs.values()), 2)}


@pytest.fixture
def xfperf_case() -> None:
    """The perf case of this test; parametrized by pytest_generate_tests."""
    return None


@pytest.fixture
def xfperf(request: pytest.FixtureRequest, xfperf_case: Any) -> Iterator[Any]:
    """The case harness: artifacts and runner ready; call ``xfperf.check()`` in the test."""
    from pytest_xfperf.harness import CaseHarness

    config = request.config
    state = _state(config)
    # The marker was parsed once, at collection, into the case's tolerances.
    tolerances = (xfperf_case.tolerances if xfperf_case is not None
                  and xfperf_case.tolerances is not None else state.settings.gate.tolerances)

    def benchmark_fixture() -> Any:
        # pytest-benchmark is a dependency, but a project may disable it with -p no:benchmark.
        try:
            return request.getfixturevalue("benchmark")
        except pytest.FixtureLookupError:
            return None

    from pytest_xfperf.limits import CaseLimits

    def record_property(name: str, value: object) -> None:  # what the record_property fixture does
        request.node.user_properties.append((name, value))

    harness = CaseHarness(_session(config), xfperf_case, tolerances, benchmark_fixture,
                          record_property)
    settings = state.settings
    case_id = xfperf_case.id if xfperf_case is not None else "xfperf"
    # The limits span setup (artifact builds) and the test body, which runs at the yield.
    with CaseLimits(case_id, settings.timeout, settings.max_memory_mb):
        try:
            harness.setup()
            yield harness
        finally:
            harness.close()


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or state.session is None or not state.session.results:
        return
    from pytest_xfperf.report.terminal import write_summary

    session = state.session
    terminalreporter.write_sep("=", "xfperf results")
    if session.shard:
        shard = session.shard
        terminalreporter.write_line(
            f"shard {shard['index']}/{shard['count']}: {shard['selected']} of {shard['cases']} "
            f"case(s), recorded cost {shard['cost_s']:.0f} s of {shard['total_cost_s']:.0f} s "
            f"(costs from {shard['costs']}; partition {shard['partition']})")
    write_summary(session.results, terminalreporter.write_line, config.get_verbosity() > 0)
    for note in session.notes:
        terminalreporter.write_line(note)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """xdist controller: collect a finished worker's results (see pytest_sessionfinish)."""
    state = node.config.stash.get(STATE, None)
    output = getattr(node, "workeroutput", {}).get("xfperf")
    if state is None or not output:
        return
    state.worker_outputs.append(output)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(STATE, None)
    if state is None or state.session is None:
        return
    workeroutput = getattr(session.config, "workeroutput", None)
    if workeroutput is not None:
        # An xdist worker hands its results to the controller, which writes one baseline
        # update and one report for the whole run.
        workeroutput["xfperf"] = state.session.worker_output()
        return
    state.session.finish(state.worker_outputs)
