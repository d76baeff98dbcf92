"""Shared by every framework's workload script; standard library only.

Each workload script runs in its own framework's virtual environment, as
``python peers/<framework>.py WORKLOAD [key=value ...]``, and prints one JSON object on its last
line of stdout. ``run_all.py`` collects these objects and computes the statistics.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from typing import Any

#: The tool every workload calls: a dictionary lookup, so the tool itself costs ~nothing.
TABLE = {str(i): f"value {i}" for i in range(1000)}
#: The final answer of a run.
ANSWER = "done"
#: One streamed token (the same for every framework).
TOKEN = "tok "


def lookup_value(key: str) -> str:
    return TABLE.get(key, "missing")


def parse_args(argv: list[str]) -> tuple[str, dict[str, str]]:
    if not argv:
        raise SystemExit("usage: <framework>.py WORKLOAD [key=value ...]")
    options = dict(a.split("=", 1) for a in argv[1:])
    return argv[0], options


def run_main(name: str, version: Callable[[], str],
             workloads: dict[str, Callable[[dict[str, str]], Any]]) -> None:
    """Run the workload the command line names and print its JSON line.

    asyncio is imported only for a workload that returns a coroutine: the cold-import workload
    must measure a process that has not loaded it (about 30 ms and 66 modules, ssl included).
    """
    workload, opts = parse_args(sys.argv[1:])
    if workload not in workloads:
        raise SystemExit(f"unknown workload {workload!r}; choose from {sorted(workloads)}")
    data = workloads[workload](opts)
    if hasattr(data, "__await__"):
        import asyncio

        data = asyncio.run(data)
    emit(name, version(), workload, data)


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def emit(framework: str, version: str, workload: str, data: dict[str, Any]) -> None:
    payload = {"framework": framework, "version": version, "workload": workload,
               "python": sys.version.split()[0], "pid": os.getpid(), **data}
    sys.stdout.flush()
    print(json.dumps(payload), flush=True)


def maxrss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def work_dir() -> str:
    """A fresh temporary directory, made the current one (loom-agent writes ./.loom/ there)."""
    path = tempfile.mkdtemp(prefix="loombench-")
    os.chdir(path)
    return path


class Clock:
    """Wall and CPU (process, all threads) time of a block."""

    def __enter__(self) -> Clock:
        self.wall0, self.cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.wall0
        self.cpu = time.process_time() - self.cpu0


class TurnClock:
    """Timestamps of model calls, to time single turns inside one run."""

    def __init__(self) -> None:
        self.stamps: list[float] = []

    def tick(self) -> None:
        self.stamps.append(time.perf_counter())

    def gaps_us(self) -> list[float]:
        s = self.stamps
        return [(b - a) * 1e6 for a, b in zip(s, s[1:])]


async def measure_turns(run_once: Callable[[int, TurnClock], Awaitable[None]], ns: list[int],
                        inner: int) -> dict[str, Any]:
    """Per-turn overhead for runs of ``n`` tool-call turns (``n + 1`` model calls per run).

    ``await run_once(n, clock)`` runs one agent run whose model answers ``n`` times with a tool call and
    then with the final answer, calling ``clock.tick()`` at every model call.
    """
    await run_once(10, TurnClock())  # warm-up: first-call costs (schema building, imports) are not turns
    out: dict[str, Any] = {"per_turn_us": {}, "cpu_per_turn_us": {}, "gap_first10_us": [],
                           "gap_last10_us": []}
    for n in ns:
        walls, cpus = [], []
        for _ in range(inner):
            clock = TurnClock()
            gc.collect()
            with Clock() as c:
                await run_once(n, clock)
            if len(clock.stamps) != n + 1:
                raise RuntimeError(f"expected {n + 1} model calls, saw {len(clock.stamps)}")
            walls.append(c.wall * 1e6 / (n + 1))
            cpus.append(c.cpu * 1e6 / (n + 1))
            if n == max(ns):
                gaps = clock.gaps_us()
                out["gap_first10_us"].append(sorted(gaps[:10])[5])
                out["gap_last10_us"].append(sorted(gaps[-10:])[5])
        out["per_turn_us"][str(n)] = walls
        out["cpu_per_turn_us"][str(n)] = cpus
    return out


async def measure_session(run_one: Callable[[int], Awaitable[None]], runs: int) -> dict[str, Any]:
    """Milliseconds of each of ``runs`` consecutive runs in one session."""
    times = []
    for i in range(runs):
        t0 = time.perf_counter()
        await run_one(i)
        times.append((time.perf_counter() - t0) * 1e3)
    return {"run_ms": times}


def measure_import(module: str) -> dict[str, Any]:
    """Wall and CPU time and memory of a cold ``import module`` in this fresh process."""
    import importlib

    rss0, peak0 = current_rss_mb(), maxrss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    importlib.import_module(module)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {"import_ms": wall * 1e3, "import_cpu_ms": cpu * 1e3, "rss_mb_before": rss0,
            "rss_mb_after": current_rss_mb(), "peak_rss_mb": maxrss_mb(), "peak_rss_mb_before": peak0,
            "modules": len(sys.modules)}
