"""Benchmark: DataFrame export of 100,000 stored events, and evaluate() over 1,000 tasks.

    .venv/bin/python benchmarks/export_evaluate.py [--events 100000] [--tasks 1000]

The store is generated with the real kernel (Model.function, one tool call per run: 9 events a
run) in a temporary SQLite file. Each measurement runs twice: once for wall time, once under
tracemalloc for the peak of Python allocations (tracemalloc slows the code it watches).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import loom_nb  # noqa: E402
from loom_nb import Agent, Model, SessionConfig, tool  # noqa: E402
from loom_nb.export import events_df, runs_df, tool_calls_df  # noqa: E402
from loom_nb.scoring import exact  # noqa: E402

RUNS_PER_SESSION = 10


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}"


def answer(request: Any) -> Any:
    last = request.messages[-1]
    if last.role == "tool":
        return f"The answer is {last.parts[0].content}."
    return {"tool": "lookup", "args": {"key": last.text}}


def generate(path: str, events: int) -> tuple[int, float]:
    """A store with at least ``events`` events; returns (events, seconds)."""
    agent = Agent(Model.function(answer), tools=[lookup])
    started = time.perf_counter()
    runs = -(-events // 9)
    for i in range(runs):
        session = agent.session(SessionConfig(id=f"s{i // RUNS_PER_SESSION}", store=path))
        session.run_sync(f"k{i}")
    return runs * 9, time.perf_counter() - started


def measure(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """(seconds, peak MiB of Python allocations, result)."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return seconds, peak / 2**20, result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--tasks", type=int, default=1_000)
    args = parser.parse_args()
    rows: list[tuple[str, str, float, float]] = []
    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "bench.sqlite")
        count, seconds = generate(path, args.events)
        size = os.path.getsize(path) / 2**20
        import pandas  # noqa: F401 - imported before timing: the first import costs about a second

        print(f"generated {count:,} events in {seconds:.1f} s ({size:.0f} MiB store)", flush=True)
        for name, fn in (("events_df(path)", lambda: events_df(path)),
                         ("runs_df(path)", lambda: runs_df(path)),
                         ("tool_calls_df(path)", lambda: tool_calls_df(path))):
            t, mib, frame = measure(fn)
            rows.append((name, f"{len(frame):,} rows x {frame.shape[1]} cols", t, mib))
        frame = events_df(path)
        rows.append(("  (frame memory_usage(deep))", "", float("nan"),
                     frame.memory_usage(deep=True).sum() / 2**20))

        tasks = [f"task {i}" for i in range(args.tasks)]
        for label, store in (("memory store", None),
                             ("SQLite store", os.path.join(folder, "eval.sqlite"))):
            counter = iter(range(10**9))

            def run(store: Any = store) -> Any:
                agent = Agent(Model.scripted(["done"] * args.tasks))
                # A new name each time: the second (tracemalloc) pass must run, not resume.
                return loom_nb.evaluate(agent, tasks, store=store, concurrency=8, progress=False,
                                        name=f"bench{next(counter)}")

            t, mib, frame = measure(run)
            assert (frame.status == "completed").all(), frame.status.value_counts()
            rows.append((f"evaluate, {label}", f"{len(frame):,} tasks, concurrency 8", t, mib))
        resume_store = os.path.join(folder, "eval.sqlite")
        t, mib, frame = measure(lambda: loom_nb.evaluate(
            Agent(Model.scripted([])), tasks, store=resume_store, progress=False, name="bench0"))
        assert frame.resumed.all()
        rows.append(("evaluate, resume all from SQLite", f"{len(frame):,} tasks", t, mib))
        # Scored: each score is also kept in the store (a feedback record), for resume.
        scored = [{"input": task, "target": "done"} for task in tasks]
        counter = iter(range(10**9))
        t, mib, frame = measure(lambda: loom_nb.evaluate(
            Agent(Model.scripted(["done"] * args.tasks)), scored, store=resume_store,
            concurrency=8, progress=False, scorers=[exact()], name=f"scored{next(counter)}"))
        assert (frame.score_exact == 1).all()
        rows.append(("evaluate + exact(), SQLite store", f"{len(frame):,} tasks, concurrency 8", t,
                     mib))

    print(f"\n{'what':36} {'size':32} {'seconds':>8} {'peak MiB':>9}")
    for name, size_text, t, mib in rows:
        print(f"{name:36} {size_text:32} {t:8.2f} {mib:9.1f}")


if __name__ == "__main__":
    main()
