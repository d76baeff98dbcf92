"""Context rendering and budget checking as history grows.

Two measurements, printed as a table:

1. The per-request cost of the context step (partition snapshot, budget check, request build)
   for histories of growing length, with a window large enough that nothing is compacted.
   Token counts are kept incrementally, so the snapshot should cost the same at any length;
   only building the request copies the message list.
2. A long session of runs (one tool call each) on a small window, so that compaction and
   renewal keep the history bounded: the time of the first runs against the last runs.

Run: .venv/bin/python benchmarks/context_budget.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

from loom_nb import Agent, Message, Model, ModelRequest, SessionConfig, TextPart, ToolCall, ToolResult, tool
from loom_nb.context import build_request
from loom_nb.run import RunLoop
from loom_nb.runtime import ContextProtocol, ContinuityPolicy, Runtime
from loom_nb.task import RunContext, RuntimeTask


@tool
def lookup(key: str) -> str:
    """Look a key up."""
    return f"value of {key}: " + "data " * 40


def _exchange(i: int) -> list[Message]:
    return [Message.user(f"question {i}"),
            Message(role="assistant", parts=(ToolCall(id=f"c{i}", name="lookup", args={"key": str(i)}),)),
            Message(role="tool", parts=(ToolResult(call_id=f"c{i}", name="lookup", content="data " * 40),)),
            Message(role="assistant", parts=(TextPart(text=f"answer {i}"),))]


def context_step(messages: int, repeats: int = 200) -> tuple[float, float]:
    """Median microseconds of (snapshot + budget check) and of building the request."""
    agent = Agent(Model.scripted([], context_window=10**9), "Be brief.", tools=[lookup])
    session = agent.session()
    for i in range(messages // 4):
        session.context.append(_exchange(i))
    loop = RunLoop(session, RuntimeTask("go"), RunContext())
    snap_times, build_times = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        snapshot = loop.window.snapshot()
        _ = snapshot.total <= agent.runtime.context.compact_at * snapshot.budget.available
        t1 = time.perf_counter()
        build_request(rendered=loop.window.rendered(), history=session.history,
                      tools=agent.tool_definitions)
        t2 = time.perf_counter()
        snap_times.append((t1 - t0) * 1e6)
        build_times.append((t2 - t1) * 1e6)
    return statistics.median(snap_times), statistics.median(build_times)


def long_session(runs: int = 1_000) -> tuple[list[float], int, int]:
    def model_fn(request: ModelRequest) -> object:
        if request.messages[-1].role == "user":
            return {"tool": "lookup", "args": {"key": str(len(request.messages))}}
        return "done"

    def summarize(messages: Sequence[Message], instructions: str) -> str:
        return f"{len(messages)} messages about lookups"

    runtime = Runtime.sdk(context=ContextProtocol(output_reserve=1_000, summarizer=summarize),
                          continuity=ContinuityPolicy(keep_recent=6))
    session = Agent(Model.function(model_fn, context_window=8_000), tools=[lookup],
                    runtime=runtime).session(SessionConfig(store=":memory:"))
    times, compactions, renewals = [], 0, 0
    for i in range(runs):
        t0 = time.perf_counter()
        result = session.run_sync(f"look up {i}")
        times.append((time.perf_counter() - t0) * 1e3)
        compactions += sum(e.type == "context.compacted" for e in result.events)
        renewals += sum(e.type == "context.renewed" for e in result.events)
    return times, compactions, renewals


def main() -> None:
    print("1. Context step per request, by history length (median of 200, microseconds)")
    print(f"{'messages':>10} {'snapshot+check':>15} {'build request':>14}")
    for n in (100, 1_000, 10_000, 50_000):
        snap, build = context_step(n)
        print(f"{n:>10} {snap:>15.1f} {build:>14.1f}")
    print()
    runs = 1_000
    times, compactions, renewals = long_session(runs)
    first, last = statistics.median(times[:50]), statistics.median(times[-50:])
    print(f"2. A session of {runs} runs on an 8k window ({compactions} compactions, {renewals} renewals)")
    print(f"   median run time, runs 1-50:        {first:.3f} ms")
    print(f"   median run time, runs {runs - 49}-{runs}:  {last:.3f} ms   (ratio {last / first:.2f})")


if __name__ == "__main__":
    main()
