"""Benchmark: evaluate() throughput, local (one process) against Ray workers on this machine.

    .venv/bin/python benchmarks/evaluate_ray.py [--tasks 40] [--workers 2]

Two workloads, each over ``--tasks`` tasks in a fresh SQLite file (one machine: SQLite is safe
for Ray workers here; a cluster wants PostgreSQL): ``cpu`` calls a tool that holds the GIL for
about 50 ms (hashing), ``io`` waits 200 ms for a "model". Locally the samples share one process
(``concurrency=8``); on Ray each sample is a task on one of ``--workers`` worker processes
(``concurrency`` = 2 x workers, so a worker never idles waiting for the next task). Ray's start
and the first tasks (worker processes importing loom_nb) are timed apart: they are paid once
per kernel, not per evaluation. Printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)  # "_eval_agents:..." for this process; Ray workers get the script's dir

import loom_nb  # noqa: E402


def _timed(agent: str, tasks: list[str], store: str, **options: object) -> float:
    started = time.perf_counter()
    df = loom_nb.evaluate(agent, tasks, store=store, progress=False, **options)
    elapsed = time.perf_counter() - started
    bad = df[df.status != "completed"]
    if len(bad):
        raise SystemExit(f"{len(bad)} samples did not complete: {bad.error.iloc[0]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=40)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    import ray

    from loom_nb.executors import RayExecutor

    folder = tempfile.mkdtemp(prefix="loom-ray-bench-")
    tasks = [f"task {i}" for i in range(args.tasks)]
    rows: list[tuple[str, str, float]] = []
    for name in ("cpu", "io"):
        seconds = _timed(f"_eval_agents:{name}_agent", tasks, f"{folder}/local-{name}.sqlite",
                         concurrency=8)
        rows.append((name, "local, concurrency=8", seconds))

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report over the internet
    started = time.perf_counter()
    ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    start_s = time.perf_counter() - started
    ray_exec = RayExecutor()
    warm_s = _timed("_eval_agents:io_agent", [f"warm {i}" for i in range(args.workers)],
                    f"{folder}/warm.sqlite", executor=ray_exec, concurrency=args.workers)
    for name in ("cpu", "io"):
        seconds = _timed(f"_eval_agents:{name}_agent", tasks, f"{folder}/ray-{name}.sqlite",
                         executor=ray_exec, concurrency=2 * args.workers)
        rows.append((name, f"Ray, {args.workers} workers", seconds))
    ray.shutdown()

    print(f"evaluate() over {args.tasks} tasks on {os.cpu_count()} cores "
          f"(Ray start {start_s:.1f} s, first {args.workers} tasks {warm_s:.1f} s, paid once)")
    print(f"{'workload':<10}{'executor':<24}{'seconds':>9}{'samples/s':>11}")
    for name, executor, seconds in rows:
        print(f"{name:<10}{executor:<24}{seconds:>9.2f}{args.tasks / seconds:>11.1f}")


if __name__ == "__main__":
    main()
