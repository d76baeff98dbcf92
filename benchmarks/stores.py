"""SQLite against PostgreSQL as a session store: what each write costs the run loop, how long a
run of 10 tool-call turns takes, and how many runs per second several processes store together.

PostgreSQL here is a throwaway server on loopback (tests/pg_server.py: fsync off, so these are
round trips and server work, not disk flushes); across a network add its round-trip time to
every write. Prints a table; asserts nothing.

    .venv/bin/python benchmarks/stores.py [--runs 40] [--processes 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from loom_nb import Agent, Model, SessionConfig, tool  # noqa: E402
from loom_nb.events import RunEvent  # noqa: E402
from loom_nb.store import PostgresStore, RunRecord, SQLiteStore  # noqa: E402
from tests.pg_server import start_server  # noqa: E402


@tool
def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def _write_latency(store: object, n: int = 300) -> tuple[float, float]:
    """Median µs of one append_events (3 events) and of one save_run."""
    events, runs = [], []
    for i in range(n):
        batch = [RunEvent(type="model.delta", run_id=f"lat_{i}", session_id="lat", seq=s)
                 for s in range(3)]
        start = time.perf_counter()
        store.append_events(batch)  # type: ignore[attr-defined]
        events.append(time.perf_counter() - start)
        record = RunRecord(run_id=f"lat_{i}", session_id="lat", agent="a", model="m", prompt="p")
        start = time.perf_counter()
        store.save_run(record)  # type: ignore[attr-defined]
        runs.append(time.perf_counter() - start)
    return statistics.median(events) * 1e6, statistics.median(runs) * 1e6


def _run_time(store: object, runs: int) -> float:
    """Median ms of one run of 10 tool-call turns, stored."""
    turns = ([{"tool": "add", "args": {"a": 1, "b": 2}}] * 10 + ["done"]) * runs
    session = Agent(Model.scripted(turns), tools=[add]).session(SessionConfig(store=store))
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run_sync("add")
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


_WORKER = textwrap.dedent("""
    import sys, time
    from loom_nb import Agent, Model, SessionConfig
    store, runs, me = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    agent = Agent(Model.function(lambda r: "ok"))
    start = time.perf_counter()
    for i in range(runs):
        agent.session(SessionConfig(id=f"{me}-{i}", store=store)).run_sync("hi")
    print(time.perf_counter() - start)
""")


def _throughput(spec: str, processes: int, runs: int) -> float:
    """Runs per second that ``processes`` processes store together (one session per run), from
    the time each worker spent in its runs (its start-up left out)."""
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, spec, str(runs), f"p{p}"],
                                stdout=subprocess.PIPE, text=True) for p in range(processes)]
    spent = [float(worker.communicate(timeout=600)[0]) for worker in workers]
    return processes * runs / max(spent)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--processes", type=int, default=3)
    args = parser.parse_args()
    server = start_server()
    try:
        with tempfile.TemporaryDirectory() as folder:
            specs = {"sqlite": str(Path(folder) / "bench.sqlite"),
                     "postgres": server.new_database()}
            rows = []
            for kind, spec in specs.items():
                store = SQLiteStore(spec) if kind == "sqlite" else PostgresStore(spec)
                events_us, run_us = _write_latency(store)
                run_ms = _run_time(store, args.runs)
                shared = _throughput(spec, args.processes, args.runs)
                rows.append((kind, events_us, run_us, run_ms, shared))
    finally:
        server.stop()
    print(f"{'store':<9} {'append_events µs':>17} {'save_run µs':>12} {'10-turn run ms':>15} "
          f"{f'runs/s, {args.processes} procs':>18}")
    for kind, events_us, run_us, run_ms, shared in rows:
        print(f"{kind:<9} {events_us:>17.0f} {run_us:>12.0f} {run_ms:>15.1f} {shared:>18.1f}")


if __name__ == "__main__":
    main()
