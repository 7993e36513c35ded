from pathlib import Path

import pytest

from pytest_xfperf.settings import Tolerances, read_pyproject, resolve
from pytest_xfperf.values import Shape, check_known, parse_shapes, parse_tolerance, split_list


@pytest.mark.parametrize("text,expected", [("1x128", Shape(1, 128)), (" 8X64 ", Shape(8, 64))])
def test_shape_parses(text, expected):
    assert Shape.parse(text) == expected
    assert expected.label == f"b{expected.batch}s{expected.seq}"


@pytest.mark.parametrize("text", ["", "128", "1x", "x128", "1x128x2", "0x128", "1x0", "-1x5",
                                  "1.5x128", "axb", "99999x1"])
def test_bad_shapes_name_the_problem(text):
    with pytest.raises(ValueError, match="shape|batch|sequence"):
        parse_shapes(text)


def test_shape_list_dedups_and_accepts_lists():
    assert parse_shapes("1x128, 8x128 1x128") == (Shape(1, 128), Shape(8, 128))
    assert parse_shapes(["4x32"]) == (Shape(4, 32),)


@pytest.mark.parametrize("text,value", [("0.1", 0.1), ("10%", 0.1), (0.25, 0.25)])
def test_tolerance(text, value):
    assert parse_tolerance(text) == pytest.approx(value)


@pytest.mark.parametrize("text", ["0", "-0.1", "10", "nan", "inf", "abc", "%"])
def test_bad_tolerance(text):
    with pytest.raises(ValueError, match="tolerance"):
        parse_tolerance(text)


def test_split_list_rejects_non_strings():
    assert split_list("a, b  c,a") == ["a", "b", "c"]
    with pytest.raises(ValueError):
        split_list([1, 2])  # type: ignore[list-item]


def test_check_known_lists_valid_names():
    with pytest.raises(ValueError, match=r"unknown backend 'ort-gpu'.*valid backends: a, b"):
        check_known("backend", ["a", "ort-gpu"], ["b", "a"])


def test_precedence_cli_over_env_over_ini_over_pyproject():
    pyproject = {"models": ["from-pyproject"], "backends": ["b-pyproject"],
                 "precisions": ["p-pyproject"], "shapes": ["2x16"]}
    ini = {"backends": "b-ini", "precisions": "p-ini", "shapes": "3x16"}
    env = {"XFPERF_PRECISIONS": "p-env", "XFPERF_SHAPES": "4x16"}
    cli = {"shapes": parse_shapes("5x16")}
    s = resolve(cli, ini, pyproject, env, enabled=True)
    assert s.matrix.models == ("from-pyproject",)
    assert s.matrix.backends == ("b-ini",)
    assert s.matrix.precisions == ("p-env",)
    assert s.matrix.shapes == (Shape(5, 16),)


def test_bad_value_names_its_source():
    with pytest.raises(ValueError, match="environment variable XFPERF_SHAPES"):
        resolve({}, {}, {}, {"XFPERF_SHAPES": "oops"})
    with pytest.raises(ValueError, match=r"\[tool.xfperf\] min_rounds"):
        resolve({}, {}, {"min_rounds": 0}, {})


def test_tolerances_from_table_and_flag():
    s = resolve({"tolerance": 0.2}, {}, {"tolerances": {"memory": "50%", "p50": 0.3}}, {})
    assert s.gate.tolerances == Tolerances(p50=0.2, throughput=0.2, memory=0.5)
    with pytest.raises(ValueError, match="unknown tolerance 'latency'"):
        resolve({}, {}, {"tolerances": {"latency": 0.1}}, {})


def test_pyproject_unknown_key_and_bad_toml(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.xfperf]\nmodel = ["x"]\n')
    with pytest.raises(ValueError, match="unknown key.*model.*valid keys"):
        read_pyproject(tmp_path)
    (tmp_path / "pyproject.toml").write_text("[tool.xfperf\n")
    with pytest.raises(ValueError, match="cannot read"):
        read_pyproject(tmp_path)
    (tmp_path / "pyproject.toml").write_text('[tool.xfperf]\nshapes = ["1x8"]\n')
    assert read_pyproject(tmp_path) == {"shapes": ["1x8"]}


def test_backend_session_tables_are_validated_and_parsed():
    settings = resolve({}, {}, {"ort-cpu": {"intra_op_threads": 2, "execution_mode": "Parallel"},
                                "torch-cpu": {"threads": "1"}}, environ={})
    assert settings.backend_options == {
        "ort-cpu": {"intra_op_threads": 2, "execution_mode": "parallel"},
        "torch-cpu": {"threads": 1}}
    with pytest.raises(ValueError, match=r"\[tool.xfperf.ort-cpu\]: unknown setting\(s\) "
                                         r"threads for backend ort-cpu; valid: execution_mode"):
        resolve({}, {}, {"ort-cpu": {"threads": 2}}, environ={})
    with pytest.raises(ValueError, match=r"ort-cpu\]\.execution_mode: execution_mode must be "
                                         r"one of sequential, parallel"):
        resolve({}, {}, {"ort-cpu": {"execution_mode": "turbo"}}, environ={})
    with pytest.raises(ValueError, match=r"ort-cpu\]\.spin_between_calls"):
        resolve({}, {}, {"ort-cpu": {"spin_between_calls": "sometimes"}}, environ={})
    with pytest.raises(ValueError, match="must be a table"):
        resolve({}, {}, {"ort-cpu": 3}, environ={})


def test_pipeline_options_parse_and_reject_bad_values():
    settings = resolve({}, {}, {"exporter": "dynamo", "calibration_method": "entropy",
                                "calibration_batches": 2, "per_channel": "false"}, environ={})
    build = settings.build
    assert (build.exporter, build.calibration_method) == ("dynamo", "entropy")
    assert build.calibration_batches == 2 and build.per_channel is False
    assert build.reduce_range is None  # auto: from the machine fingerprint
    assert resolve({}, {}, {"reduce_range": "true"}, environ={}).build.reduce_range is True
    with pytest.raises(ValueError, match="calibration_batches"):
        resolve({}, {}, {"calibration_batches": 0}, environ={})
    with pytest.raises(ValueError, match="calibration_method must be one of minmax"):
        resolve({}, {}, {"calibration_method": "kl"}, environ={})


def test_backend_tables_are_valid_pyproject_keys(tmp_path: Path):
    (tmp_path / "pyproject.toml").write_text('[tool.xfperf.ort-cpu]\nintra_op_threads = 2\n')
    assert read_pyproject(tmp_path) == {"ort-cpu": {"intra_op_threads": 2}}


def test_every_option_sets_the_field_it_names():
    """Each Option row's target is a real field of the nested settings, built once."""
    from dataclasses import fields

    from pytest_xfperf.settings import OPTIONS, Settings

    top = {f.name: f for f in fields(Settings)}
    for option in OPTIONS:
        group, _, name = option.target.rpartition(".")
        if group:
            assert name in {f.name for f in fields(top[group].default_factory())}, option.key
        else:
            assert name in top, option.key
    settings = resolve({}, {}, {"serving_requests": 50, "max_queue_delay_ms": 3, "seed": 7,
                                "min_time": 1.5, "other_machine": "fail"}, environ={})
    assert settings.serving.requests == 50 and settings.serving.max_delay_ms == 3.0
    assert settings.serving.seed == 7 and settings.seed == 7
    assert settings.timing.min_time == 1.5 and settings.gate.other_machine == "fail"


def test_spreads_set_the_gate_policy_and_bad_ones_name_the_fix():
    settings = resolve({}, {}, {"spreads": {"wall_normalized": 0.02}}, environ={})
    assert settings.gate.policy.spread_wall_normalized == 0.02
    assert settings.gate.policy.spread_wall_own == 0.15  # the others keep their defaults
    from_env = resolve({}, {}, {}, environ={"XFPERF_SPREADS": "device_own=0.01"})
    assert from_env.gate.policy.spread_device_own == 0.01
    with pytest.raises(ValueError, match="unknown spread 'wall'; valid: device_eager_normalized, "
                       "device_eager_work, device_launched"):
        resolve({}, {}, {"spreads": "wall=0.1"}, environ={})
    # A spread that was removed says where its cases went.
    with pytest.raises(ValueError, match="'device_compiled' no longer exists: torch-compile"):
        resolve({}, {}, {"spreads": {"device_compiled": 0.1}}, environ={})
    with pytest.raises(ValueError, match="below 1"):
        resolve({}, {}, {"spreads": {"wall_own": 2}}, environ={})
    with pytest.raises(ValueError, match="wall_own must be a finite number"):
        resolve({}, {}, {"spreads": {"wall_own": "nan"}}, environ={})
