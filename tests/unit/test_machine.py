"""The machine fingerprint: two CPU generations under one label never share a baseline file,
and the INT8 recipe follows the ISA."""

import pytest

from pytest_xfperf.artifacts.options import BuildOptions
from pytest_xfperf.baselines import machine
from pytest_xfperf.baselines.machine import (
    differences,
    has_vnni,
    machine_key,
    nearest,
    parse_cpuinfo,
)

# /proc/cpuinfo of 2-core EPYC kinds CI is given, first processor only (shortened).
ZEN4 = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512bw avx512_vnni avx512_bf16 sha_ni

processor\t: 1
vendor_id\t: AuthenticAMD
"""
ZEN3 = ZEN4.replace("model\t\t: 17", "model\t\t: 1").replace(
    " avx512f avx512bw avx512_vnni avx512_bf16", "")

# A newer generation: Zen 4's flags and AVX-VNNI.
ZEN5 = ZEN4.replace("cpu family\t: 25", "cpu family\t: 26").replace(
    "model\t\t: 17", "model\t\t: 2").replace("sha_ni", "avx_vnni sha_ni")


def fingerprint(text: str) -> dict:
    return {**parse_cpuinfo(text), "cores": 2, "memory_gb": 24}


def test_cpuinfo_gives_vendor_family_model_and_inference_flags():
    facts = parse_cpuinfo(ZEN4)
    assert facts == {"cpu_vendor": "AuthenticAMD", "cpu_family": "25", "cpu_model": "17",
                     "cpu_name": "AMD EPYC",
                     "isa": ["avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "fma"]}


def test_two_generations_under_one_label_get_two_files_and_a_readable_difference():
    zen4, zen3 = fingerprint(ZEN4), fingerprint(ZEN3)
    assert machine_key(zen4) != machine_key(zen3)
    assert machine_key(zen4).startswith("cpu-amd-epyc-2c-")
    assert machine_key(zen3).startswith("cpu-amd-epyc-2c-")
    diff = differences(zen4, zen3)
    assert diff == ["cpu_model: '17' there, '1' here",
                    "isa: avx512_bf16 missing here, avx512_vnni missing here, avx512bw missing "
                    "here, avx512f missing here"]
    assert differences(zen4, zen4) == []


def test_the_nearest_file_counts_isa_flags_one_by_one():
    # Family, model and the flag list differ from both older files; by flags, Zen 4 lacks
    # one of Zen 5's and Zen 3 five, so Zen 4's file is the one to name, whatever the order.
    zen5 = fingerprint(ZEN5)
    for names in (("a-zen3", "b-zen4"), ("b-zen3", "a-zen4")):
        recorded = {names[0]: fingerprint(ZEN3), names[1]: fingerprint(ZEN4)}
        name, diff = nearest(recorded, zen5)
        assert name == names[1]
        assert diff == ["cpu_family: '25' there, '26' here", "cpu_model: '17' there, '2' here",
                        "isa: avx_vnni only here"]
    assert nearest({}, zen5) is None
    assert nearest({"same": zen5, "other": fingerprint(ZEN3)}, zen5) == ("same", [])


def test_a_fingerprint_missing_fields_is_another_machine():
    old = {"key": "cpu-amd-epyc-2c", "cpu": "AMD EPYC", "cores": 2}  # an older file's block
    assert "isa: not recorded" in differences(machine.fingerprint_of(old), fingerprint(ZEN4))


def test_gpu_fields_count():
    with_gpu = {**fingerprint(ZEN4), "gpu_name": "NVIDIA H200", "gpu_count": 1,
                "gpu_driver_major": "580"}
    assert machine_key(with_gpu).startswith("gpu-nvidia-h200-x1-cpu-amd-epyc-2c-")
    newer = {**with_gpu, "gpu_driver_major": "590"}
    assert differences(with_gpu, newer) == ["gpu_driver_major: '580' there, '590' here"]


@pytest.mark.parametrize(("text", "reduce"), [(ZEN4, False), (ZEN3, True)])
def test_the_int8_recipe_follows_the_isa(monkeypatch, text, reduce):
    """7-bit weights where the CPU has no 8-bit dot product (their INT8 kernels saturate)."""
    assert has_vnni(fingerprint(text)) is not reduce
    monkeypatch.setattr(machine, "machine_info", lambda: fingerprint(text))
    assert BuildOptions().resolved_reduce_range() is reduce
    assert BuildOptions(reduce_range=False).resolved_reduce_range() is False
