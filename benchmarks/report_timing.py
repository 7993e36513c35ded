"""Issue-7 figure: what the human-readable reports add to a run.

    python benchmarks/report_timing.py [REPORT.json ...]

For each JSON report (default: the committed examples), in a fresh interpreter each time (so
matplotlib's import is counted, as in a real run): the time of render_outputs writing the
Markdown report, the HTML report and the PNG plots, the way pytest_sessionfinish calls it.
Prints one JSON object.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT = [ROOT / "docs/examples/report.json", ROOT / "docs/examples/h100/plugin.json"]
CHILD = """
import sys, time
from pathlib import Path
started = time.perf_counter()
from pytest_xfperf.report.render import render_outputs, results_from_report
results, meta = results_from_report(Path(sys.argv[1]))
loaded = time.perf_counter()
out = Path(sys.argv[2])
render_outputs(results, meta, {}, meta.get("prices") or {}, out / "r.md", out / "r.html",
               out / "plots", github_summary=False)
done = time.perf_counter()
print(len(results), round(loaded - started, 3), round(done - loaded, 3))
"""


def main() -> None:
    reports = [Path(p) for p in sys.argv[1:]] or DEFAULT
    figures = {}
    for report in reports:
        runs = []
        for _ in range(5):
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", CHILD, str(report), out],
                                      capture_output=True, text=True, check=True)
                cases, load_s, render_s = done.stdout.split()
                runs.append({"render_s": float(render_s), "load_s": float(load_s),
                             "process_s": round(time.perf_counter() - started, 3)})
        renders = sorted(r["render_s"] for r in runs)
        figures[str(report.relative_to(ROOT) if report.is_relative_to(ROOT) else report)] = {
            "cases": int(cases), "render_s_median": renders[len(renders) // 2],
            "render_s_max": renders[-1], "runs": runs}
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
