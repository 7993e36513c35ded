"""Sharding (spec parsing, cost sources, the balancing rule with known answers) and the checks
of ``report merge`` (schema, overlapping and missing shards, the status and exit code)."""

import json
from pathlib import Path

import pytest

from pytest_xfperf.report.merge import check, load, merge, side_by_side
from pytest_xfperf.shard import ShardSpec, digest, partition, recorded_costs


@pytest.mark.parametrize("text, message", [
    ("0/4", "does not exist.*numbered from 1"),
    ("5/4", "does not exist"),
    ("a/b", "malformed shard 'a/b'.*K/N"),
    ("1/0", "does not exist"),
    ("2", "malformed"),
])
def test_a_shard_that_cannot_exist_is_refused_with_the_form(text, message):
    with pytest.raises(ValueError, match=message):
        ShardSpec.parse(text)


def test_a_shard_spec_reads_k_of_n():
    assert ShardSpec.parse(" 2/4 ") == ShardSpec(2, 4)
    assert str(ShardSpec(3, 4)) == "3/4"


def groups_of(costs: dict[str, float]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for case_id in costs:
        model, _, _, shape = case_id.split("/")
        out.setdefault(f"{model} {shape}", []).append(case_id)
    return out


COSTS = {
    # Two heavy groups, four light ones.
    "big/torch/fp32/1x128": 30.0, "big/ort/fp32/1x128": 20.0, "big/ort/int8/1x128": 20.0,
    "mid/torch/fp32/1x128": 12.0, "mid/ort/fp32/1x128": 8.0,
    "s1/torch/fp32/1x8": 3.0, "s2/torch/fp32/1x8": 3.0, "s3/torch/fp32/1x8": 2.0,
    "s4/torch/fp32/1x8": 2.0,
}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 5])
def test_every_case_lands_in_exactly_one_shard_and_loads_are_balanced(count):
    assignment = partition(groups_of(COSTS), COSTS, count)
    assert set(assignment) == set(COSTS)
    assert set(assignment.values()) <= set(range(1, count + 1))
    loads = [sum(c for k, c in COSTS.items() if assignment[k] == i + 1) for i in range(count)]
    # Longest-processing-time: no shard exceeds the fair share by more than the costliest
    # unit.
    assert max(loads) <= sum(COSTS.values()) / count + max(COSTS.values())
    assert partition(groups_of(COSTS), COSTS, count) == assignment  # deterministic


def test_a_group_stays_whole_unless_it_is_bigger_than_a_fair_share():
    assignment = partition(groups_of(COSTS), COSTS, 2)
    # "big" (70 of 100) is more than half: split; "mid" (20) stays together.
    assert assignment["mid/torch/fp32/1x128"] == assignment["mid/ort/fp32/1x128"]
    assert len({assignment[k] for k in COSTS if k.startswith("big/")}) == 2
    # The known answer: 30 | 20+20, then mid (20) to the 30, the smalls to balance.
    loads = sorted(sum(c for k, c in COSTS.items() if assignment[k] == i) for i in (1, 2))
    assert loads == [50.0, 50.0]


def test_the_digest_names_the_partition():
    a = partition(groups_of(COSTS), COSTS, 3)
    assert digest(a) == digest(dict(a))
    assert digest(a) != digest(partition(groups_of(COSTS), COSTS, 2))


def test_costs_come_from_every_baseline_file_else_counts(tmp_path: Path):
    ids = ["a/x/fp32/1x8", "b/x/fp32/1x8", "c/x/fp32/1x8"]
    costs, source = recorded_costs(tmp_path / "none", None, ids)
    assert source == "counts" and costs == dict.fromkeys(ids, 1.0)
    (tmp_path / "m1.json").write_text(json.dumps(
        {"schema": 1, "cases": {ids[0]: {"seconds": 4.0}, ids[1]: {"seconds": 2.0}}}))
    (tmp_path / "m2.json").write_text(json.dumps(
        {"schema": 1, "cases": {ids[0]: {"seconds": 6.0}}}))
    (tmp_path / "broken.json").write_text("{")
    costs, source = recorded_costs(tmp_path, None, ids)
    assert source == "baselines"
    # a: the median of 4 and 6 (upper); c has none: the median of the known ones.
    assert costs == {ids[0]: 6.0, ids[1]: 2.0, ids[2]: 6.0}


# -- merge ---------------------------------------------------------------------------------

def case(case_id: str, verdict: str = "pass", p50: float = 1.0) -> dict:
    model, backend, precision, _ = case_id.split("/")
    return {"id": case_id, "model": model, "backend": backend, "precision": precision,
            "batch": 1, "seq": 8, "verdict": verdict,
            "stats": {"rounds": 10, "mean_ms": p50, "stdev_ms": 0.1, "min_ms": p50,
                      "max_ms": p50, "p50_ms": p50, "p90_ms": p50, "p95_ms": p50,
                      "p99_ms": p50, "mad_ms": 0.0, "cv": 0.0, "throughput": 1000 / p50}}


def write(path: Path, machine: str, cases: list[dict], shard: dict | None = None,
          schema: int | None = 2) -> Path:
    report = {"machine": {"key": machine}, "versions": {}, "cases": cases}
    if schema is not None:
        report["schema"] = schema
    if shard is not None:
        report["shard"] = shard
    path.write_text(json.dumps(report))
    return path


def shard(index: int, count: int = 2, partition_name: str = "p1") -> dict:
    return {"index": index, "count": count, "partition": partition_name, "matrix": "m1"}


def test_a_report_of_another_schema_is_named_with_the_fix(tmp_path: Path):
    old = write(tmp_path / "old.json", "cpu-a", [case("m/ort-cpu/fp32/b1s8")], schema=None)
    with pytest.raises(ValueError, match=r"old.json: report schema 1.*merges schema 2.*again"):
        load([old])


def test_overlapping_missing_and_disagreeing_shards_are_refused(tmp_path: Path):
    one = write(tmp_path / "1.json", "cpu-a", [case("m/ort-cpu/fp32/b1s8")], shard(1))
    two = write(tmp_path / "2.json", "cpu-a", [case("n/ort-cpu/fp32/b1s8")], shard(2))
    check(load([one, two]))  # complete and disjoint
    with pytest.raises(ValueError, match=r"shard\(s\) 2/2 missing"):
        check(load([one]))
    again = write(tmp_path / "3.json", "cpu-a", [case("m/ort-cpu/fp32/b1s8")], shard(2))
    with pytest.raises(ValueError, match="is in both.*must not overlap"):
        check(load([one, again]))
    other = write(tmp_path / "4.json", "cpu-b", [case("n/ort-cpu/fp32/b1s8")],
                  shard(2, partition_name="p2"))
    with pytest.raises(ValueError, match="split the same matrix differently"):
        check(load([one, other]))


def test_machines_are_side_by_side_and_the_exit_follows_the_worst_verdict(tmp_path: Path):
    a = write(tmp_path / "a.json", "cpu-a", [case("m/ort-cpu/fp32/b1s8", p50=2.0)])
    b = write(tmp_path / "b.json", "gpu-b", [case("m/ort-cpu/fp32/b1s8", "REGRESSED", 1.0),
                                             case("n/ort-cpu/fp32/b1s8")])
    columns, rows = side_by_side(load([a, b]))
    assert columns == ["case", "cpu-a", "gpu-b"]
    assert rows[0][0] == "m/ort-cpu/fp32/b1s8" and "2.000 ms" in rows[0][1]
    assert "**REGRESSED**" in rows[0][2] and rows[1][1] == "-"

    class Out:
        text = ""

        def write(self, s: str) -> None:
            self.text += s

    out = Out()
    markdown, page = tmp_path / "m.md", tmp_path / "m.html"
    assert merge([a, b], markdown, page, out) == 1
    assert "FAILED: 2 report(s), 2 machine(s), 3 case(s)" in out.text
    text = markdown.read_text()
    assert text.count("| m/ort-cpu/fp32/b1s8 |") == 1 and "## cpu-a" in text
    assert "<h2>gpu-b</h2>" in page.read_text()
    assert merge([a], None, None, out) == 0


def test_the_ci_example_uses_only_options_and_commands_that_exist():
    import re

    from pytest_xfperf.cli import build_merge_parser, build_parser
    from pytest_xfperf.settings import OPTIONS

    text = (Path(__file__).parents[2] / "docs" / "ci.md").read_text()
    flags = set(re.findall(r"--xfperf-[a-z-]+", text))
    assert flags and flags <= {o.cli for o in OPTIONS}
    merge_call = re.search(r"report merge (reports/\*\.json) \\\s+(--markdown \S+ --html \S+)",
                           text)
    assert merge_call is not None
    build_merge_parser().parse_args(["a.json", *merge_call.group(2).split()])
    build_parser().parse_args(["history", "show", "*", "--history", ".xfperf/history.db"])
