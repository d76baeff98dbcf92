"""Costs that grow with the work (issue 25, issue 21 "long sessions"): loom_nb alone.

Workloads, each printed as a table (``make bench`` runs them all after ``run_all.py``):

- ``requests``: memory of a long session with a test model (``Model.function``) that keeps every
  request (``keep_requests="all"``, the old behaviour) against the default bounded window.
- ``display``: the live display of a run with many zero-latency tool calls, through a real
  IPython display publisher that counts the messages it is sent.
- ``reopen``: reopening an SQLite session of N runs in a fresh process.
- ``floor``: loom_nb's per-turn cost against a hand-written asyncio loop doing the same work.

Run: .venv/bin/python benchmarks/growth.py [requests|display|reopen|floor ...]
"""

from __future__ import annotations

import gc
import sys
import time
import tracemalloc
from typing import Any

from loom_nb import Agent, Model, ModelRequest, tool


@tool
async def note(n: int) -> str:
    """Write a note."""
    return f"noted {n}"


def _tool_then_answer(request: ModelRequest) -> object:
    if request.messages[-1].role == "user":
        return {"tool": "note", "args": {"n": len(request.messages)}}
    return "done"


def requests_memory(runs: int, keep: Any) -> tuple[float, float, int]:
    """(traced MiB after the session, seconds, messages in the history)."""
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    model = Model.function(_tool_then_answer, keep_requests=keep)
    session = Agent(model, tools=[note]).session()
    start = time.perf_counter()
    for i in range(runs):
        session.run_sync(f"task {i}")
    elapsed = time.perf_counter() - start
    gc.collect()
    used = (tracemalloc.get_traced_memory()[0] - base) / 2**20
    tracemalloc.stop()
    return used, elapsed, len(session.history)


def bench_requests() -> None:
    print("## Test-model memory over session length (Model.function, one tool call per run)")
    print("Traced memory after the session (tracemalloc, in-memory store included), MiB; time, s.")
    print()
    print("| runs | messages | keep all: MiB | keep all: s | default (32+32): MiB | default: s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for runs in (250, 500, 1000, 2000):
        all_mib, all_s, messages = requests_memory(runs, "all")
        win_mib, win_s, _ = requests_memory(runs, 32)
        print(f"| {runs} | {messages} | {all_mib:.1f} | {all_s:.2f} | {win_mib:.1f} | {win_s:.2f} |")
    print()


WORKLOADS = {"requests": bench_requests}


def main() -> None:
    names = sys.argv[1:] or list(WORKLOADS)
    for name in names:
        WORKLOADS[name]()


if __name__ == "__main__":
    main()
