"""Benchmark: each export frame over a generated 100,000-event SQLite store, in a fresh process.

    .venv/bin/python benchmarks/export_frames.py [--events 100000] [--store PATH] [--repeat 3]
                                                 [--engine default,rows] [--json]

The store is made by benchmarks/export_store.py (kept at --store if given, reused when it exists).
Each measurement is a new interpreter: it imports loom_nb.export (timed), then pandas (timed
apart: the issue's targets exclude it), then builds one frame (timed), and reports the process's
peak RSS (``ru_maxrss``: everything, pandas included) and the RSS before the frame. CPU seconds
(``process_time``) are given beside the wall time: on a shared machine they move less.
Median of --repeat runs; the peak is the largest seen.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

FRAMES = ("events_df", "runs_df", "tool_calls_df", "messages_df", "feedback_df", "signals_df")

_CHILD = r"""
import json, resource, sys, time
def rss():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
t0 = time.perf_counter()
import loom_nb.export as ex
t1 = time.perf_counter()
pandas_loaded = "pandas" in sys.modules
import pandas, pyarrow
t2 = time.perf_counter()
before = rss()
kwargs = {} if sys.argv[3] == "default" else {"engine": sys.argv[3]}
if sys.argv[1] not in ("events_df", "runs_df") and kwargs:  # the frames with engines
    print(json.dumps(None)); raise SystemExit
t3, c3 = time.perf_counter(), time.process_time()
frame = getattr(ex, sys.argv[1])(sys.argv[2], **kwargs)
t4, c4 = time.perf_counter(), time.process_time()
print(json.dumps({"import_export": t1 - t0, "pandas_at_import": pandas_loaded,
                  "import_pandas": t2 - t1, "seconds": t4 - t3, "cpu_seconds": c4 - c3, "rss_before_mib": before,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rows": len(frame), "columns": frame.shape[1]}))
"""


def measure(frame: str, path: str, engine: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", _CHILD, frame, path, engine], check=True,
                         capture_output=True, text=True, cwd=os.path.dirname(HERE))
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(path: str, engines: list[str], repeat: int, frames: list[str]) -> list[dict[str, Any]]:
    rows = []
    for engine in engines:
        for frame in frames:
            runs = [measure(frame, path, engine) for _ in range(repeat)]
            if runs[0] is None:
                continue
            rows.append({"frame": frame, "engine": engine, "rows": runs[0]["rows"],
                         "columns": runs[0]["columns"],
                         "seconds": statistics.median(r["seconds"] for r in runs),
                         "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
                         "peak_mib": max(r["peak_mib"] for r in runs),
                         "rss_before_mib": statistics.median(r["rss_before_mib"] for r in runs),
                         "import_export": statistics.median(r["import_export"] for r in runs),
                         "import_pandas": statistics.median(r["import_pandas"] for r in runs),
                         "pandas_at_import": any(r["pandas_at_import"] for r in runs)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--store", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--engine", default="default,rows")
    parser.add_argument("--frames", default=",".join(FRAMES))
    parser.add_argument("--json", action="store_true", help="print the rows as JSON")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = args.store or os.path.join(folder, "export.sqlite")
        if not os.path.exists(path):
            from benchmarks.export_store import build

            made = build(path, args.events)
            print(f"store: {made}", file=sys.stderr)
        rows = run(path, args.engine.split(","), args.repeat, args.frames.split(","))
    if args.json:
        print(json.dumps(rows))
        return
    print(f"{'frame':14} {'engine':8} {'rows':>8} {'cols':>5} {'seconds':>8} {'CPU s':>6} {'peak MiB':>9} "
          f"{'RSS before':>10} {'import export':>13} {'import pandas':>13}")
    for r in rows:
        print(f"{r['frame']:14} {r['engine']:8} {r['rows']:8,} {r['columns']:5} {r['seconds']:8.3f} "
              f"{r['cpu_seconds']:6.3f} "
              f"{r['peak_mib']:9.0f} {r['rss_before_mib']:10.0f} {r['import_export']:13.3f} "
              f"{r['import_pandas']:13.3f}" + ("  (pandas imported by loom_nb.export!)"
                                               if r["pandas_at_import"] else ""))


if __name__ == "__main__":
    main()
