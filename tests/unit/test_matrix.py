import pytest

from pytest_xfperf.matrix import expand, parse_marker
from pytest_xfperf.values import Shape


def test_ids_and_order():
    cases = expand([("m", "m")], ["torch-cpu", "ort-cpu"], ["fp32", "int8-dynamic"],
                   [Shape(1, 128), Shape(8, 64)])
    assert [c.id for c in cases][:4] == [
        "m/torch-cpu/fp32/b1s128", "m/torch-cpu/int8-dynamic/b1s128",
        "m/ort-cpu/fp32/b1s128", "m/ort-cpu/int8-dynamic/b1s128"]
    assert len(cases) == 8
    assert cases[0].is_fp32_reference and not cases[2].is_fp32_reference
    assert cases[0].is_speedup_reference and not cases[2].is_speedup_reference


def test_unsupported_combination_is_a_skip_with_reason():
    (case,) = expand([("m", "m")], ["torch-cpu"], ["int8-dynamic"], [Shape(1, 8)])
    assert case.skip_reason == "torch-cpu does not run int8-dynamic (it runs fp32)"


def test_directory_model_keeps_what_the_user_wrote():
    (case,) = expand([("./models/My Model", "my-model")], ["ort-cpu"], ["fp32"], [Shape(1, 8)])
    assert case.id == "my-model/ort-cpu/fp32/b1s8" and case.ref == "./models/My Model"


def test_unknown_names_list_valid_ones():
    with pytest.raises(ValueError, match="valid backends: ort-cpu, ort-cuda, .*torch-cpu"):
        expand([("m", "m")], ["tensorrt-x"], ["fp32"], [Shape(1, 8)])
    with pytest.raises(ValueError, match="valid precisions"):
        expand([("m", "m")], ["ort-cpu"], ["int4"], [Shape(1, 8)])


def test_marker_arguments():
    assert parse_marker({"shapes": "2x8", "tolerance": "20%"}, "t") == {
        "shapes": (Shape(2, 8),), "tolerance": 0.2}
    with pytest.raises(ValueError, match="t: unknown xfperf marker argument.*shape"):
        parse_marker({"shape": "1x8"}, "t")
    with pytest.raises(ValueError, match="t: xfperf marker: malformed shape"):
        parse_marker({"shapes": "1-8"}, "t")


def test_the_marker_is_parsed_once_into_the_case():
    from pytest_xfperf.matrix import parse_marker, with_marker_tolerances
    from pytest_xfperf.settings import Tolerances

    overrides = parse_marker({"tolerances": {"memory": 0.5, "p50": 0.3}, "tolerance": "20%"},
                             "t.py::test")
    cases = expand([("m", "m")], ["torch-cpu"], ["fp32"], [Shape(1, 8)])
    (case,) = with_marker_tolerances(cases, Tolerances(speedup=0.15), overrides)
    assert case.tolerances == Tolerances(p50=0.2, throughput=0.2, memory=0.5, speedup=0.15)
    assert case == cases[0] and case.id == cases[0].id  # tolerances are not part of the id
