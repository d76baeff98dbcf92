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
from collections.abc import Callable
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


def display_run(calls: int, latency: float) -> dict[str, float]:
    """One ``%loom run`` of ``calls`` tool calls (one a turn) through a counting publisher."""
    import asyncio
    import os

    os.environ["LOOM_LIVE"] = "1"
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    from loom_nb import Runtime

    class Counting(DisplayPublisher):
        messages = 0
        bytes = 0

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False,
                    **kw):  # type: ignore[no-untyped-def]
            Counting.messages += 1
            Counting.bytes += sum(len(v) for v in data.values() if isinstance(v, str))

    async def model(request: ModelRequest) -> object:
        if latency:
            await asyncio.sleep(latency)
        done = sum(1 for m in request.messages if m.role == "tool")
        return {"tool": "note", "args": {"n": done}} if done < calls else "done"

    shell = InteractiveShell.instance()
    shell.display_pub = Counting(shell=shell, parent=shell)
    if "loom_nb" not in shell.extension_manager.loaded:
        shell.run_line_magic("load_ext", "loom_nb")
    shell.user_ns["agent"] = Agent(Model.function(model), tools=[note],
                                   runtime=Runtime.sdk(max_turns=None))
    Counting.messages = Counting.bytes = 0
    wall, cpu = time.perf_counter(), time.process_time()
    shell.run_line_magic("loom", "run -a agent go")
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"messages": Counting.messages, "mib": Counting.bytes / 2**20, "wall": wall,
            "cpu_ms_per_turn": cpu * 1e3 / (calls + 1),
            "per_s": max(0, Counting.messages - 2) / wall}  # live updates only


def bench_display() -> None:
    print("## Live display of a run with many tool calls (`%loom run`, LOOM_LIVE=1)")
    print("Display messages published (first display, live updates, final render), their size,")
    print("and CPU per model turn; tool `note` is async and returns at once.")
    print()
    print("| tool calls | model latency | messages | published MiB | wall s | live updates/s | CPU ms/turn |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for calls, latency in ((50, 0.0), (200, 0.0), (1000, 0.0), (200, 0.01)):
        r = display_run(calls, latency)
        print(f"| {calls} | {latency * 1e3:.0f} ms | {r['messages']:.0f} | {r['mib']:.2f} | "
              f"{r['wall']:.2f} | {r['per_s']:.1f} | {r['cpu_ms_per_turn']:.2f} |")
    print()


_REOPEN = """
import sys, time
t0 = time.perf_counter()
from loom_nb import Agent, Model, SessionConfig
import loom_nb.session, loom_nb.store.sqlite
# What the first session of a process imports lazily, outside the timing: an empty session.
Agent(Model.scripted([])).session(SessionConfig(store=":memory:"))
t1, c1 = time.perf_counter(), time.process_time()
session = Agent(Model.scripted([])).session(SessionConfig(id="long", store=sys.argv[1]))
t2, c2 = time.perf_counter(), time.process_time()
print(f"{(t2 - t1) * 1e3:.2f} {len(session.history)} {(c2 - c1) * 1e3:.2f}")
"""


def build_long_session(path: str, runs: int) -> tuple[float, float, float]:
    """A session of ``runs`` runs (prompt, one tool call, answer) in an SQLite file: seconds in
    all, and the median ms of the first ten runs and of the last ten."""
    import statistics

    from loom_nb import SessionConfig

    session = Agent(Model.function(_tool_then_answer), tools=[note]).session(
        SessionConfig(id="long", store=path))
    each = []
    for i in range(runs):
        t0 = time.perf_counter()
        session.run_sync(f"task {i}")
        each.append(time.perf_counter() - t0)
    return (sum(each), statistics.median(each[:10]) * 1e3, statistics.median(each[-10:]) * 1e3)


def bench_reopen() -> None:
    import os
    import statistics
    import subprocess
    import tempfile

    print("## Reopening an SQLite session in a fresh process")
    print("`Agent(...).session(SessionConfig(id=..., store=path))`, median of 9 fresh processes")
    print("(imports and the first session's lazy imports excluded); the history holds every")
    print("message (no compaction at this size), which is what the next request is built from.")
    print()
    print("| runs | messages loaded | reopen ms (median) | min | CPU ms (median) | build s | "
          "first 10 runs ms | last 10 runs ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as folder:
        for runs in (200, 1000, 2000):
            path = os.path.join(folder, f"s{runs}.sqlite")
            built, first, last = build_long_session(path, runs)
            times, cpu, loaded = [], [], 0
            for _ in range(9):
                out = subprocess.run([sys.executable, "-c", _REOPEN, path], check=True,
                                     capture_output=True, text=True).stdout.split()
                times.append(float(out[0]))
                cpu.append(float(out[2]))
                loaded = int(out[1])
            print(f"| {runs} | {loaded} | {statistics.median(times):.1f} | {min(times):.1f} | "
                  f"{statistics.median(cpu):.1f} | {built:.1f} | {first:.2f} | {last:.2f} |")
    print()


def _floor_run(turns: int) -> None:
    """The hand-written floor: per turn a model call, the arguments validated, an async tool,
    its result as JSON, five event dicts with timestamps, and the history appended."""
    import asyncio
    import json
    from datetime import datetime, timezone

    from pydantic import TypeAdapter

    validate = TypeAdapter(dict[str, str]).validate_python

    async def model(history: list[dict[str, Any]], left: int) -> Any:
        # An async generator, as a streaming provider is.
        if left:
            yield {"role": "assistant", "call": {"id": f"c{left}", "name": "lookup",
                                                 "args": {"key": str(left)}}}
        else:
            yield {"role": "assistant", "text": "done"}

    async def lookup(key: str) -> str:
        return f"value of {key}"

    async def run() -> None:
        history: list[dict[str, Any]] = [{"role": "user", "text": "go"}]
        events: list[dict[str, Any]] = []
        now = datetime.now
        for left in range(turns, -1, -1):
            events.append({"type": "model.request", "ts": now(timezone.utc), "n": len(history)})
            async for message in model(history, left):
                pass
            events.append({"type": "model.response", "ts": now(timezone.utc), "message": message})
            history.append(message)
            call = message.get("call")
            if call is None:
                break
            events.append({"type": "tool.call", "ts": now(timezone.utc), "call": call})
            events.append({"type": "governance.decision", "ts": now(timezone.utc), "allow": True})
            # With a timeout, as a tool call has one.
            async with asyncio.timeout(60):
                value = await lookup(**validate(call["args"]))
            result = json.dumps(value)
            events.append({"type": "tool.result", "ts": now(timezone.utc), "content": result})
            history.append({"role": "tool", "call_id": call["id"], "content": result})

    asyncio.run(run())


def _loom_runner() -> Callable[[int], None]:
    from loom_nb import Message, ModelResponse, Runtime, TextPart, ToolCall, Usage

    @tool
    async def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    left = [0]

    def model(request: ModelRequest) -> ModelResponse:
        left[0] -= 1
        if left[0] >= 0:
            return ModelResponse(message=Message(role="assistant", parts=(ToolCall(
                id=f"c{left[0]}", name="lookup", args={"key": str(left[0])}),)),
                usage=Usage(input_tokens=50, output_tokens=10, requests=1), stop_reason="tool_use")
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="done"),)),
                             usage=Usage(input_tokens=50, output_tokens=2, requests=1))

    agent = Agent(Model.function(model), tools=[lookup], runtime=Runtime.sdk(max_turns=None))

    def run(turns: int) -> None:
        left[0] = turns
        assert agent.run_sync("go").output == "done"
    return run


def bench_floor() -> None:
    import statistics

    print("## Per-turn overhead against a hand-written asyncio floor")
    print("Runs of 10 and of 110 tool-call turns (async tool, zero-latency model); µs per model")
    print("turn = (t(110) - t(10)) / 100, so the fixed cost of a run is left out; median of 9")
    print("interleaved repetitions. The floor does the same work per turn by hand (`_floor_run`:")
    print("pydantic validation of the arguments, the model as an async generator, the tool under")
    print("a timeout, a JSON result, five event dicts, the history).")
    print()
    loom = _loom_runner()
    results: dict[str, list[float]] = {"floor": [], "loom_nb": []}
    for fn in (_floor_run, loom):
        fn(10), fn(110)  # warm up
    for _ in range(9):
        for name, fn in (("floor", _floor_run), ("loom_nb", loom)):
            t0 = time.perf_counter()
            fn(10)
            t1 = time.perf_counter()
            fn(110)
            t2 = time.perf_counter()
            results[name].append(((t2 - t1) - (t1 - t0)) * 1e6 / 100)
    f, l_ = statistics.median(results["floor"]), statistics.median(results["loom_nb"])
    print("| floor µs/turn | loom_nb µs/turn | ratio |")
    print("| ---: | ---: | ---: |")
    print(f"| {f:.1f} | {l_:.1f} | {l_ / f:.1f}× |")
    print()


WORKLOADS = {"requests": bench_requests, "display": bench_display, "reopen": bench_reopen,
             "floor": bench_floor}


def main() -> None:
    names = sys.argv[1:] or list(WORKLOADS)
    for name in names:
        WORKLOADS[name]()


if __name__ == "__main__":
    main()
