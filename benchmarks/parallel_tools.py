"""Wall time of work that one model turn starts several times at once (issue 19).

Three workloads, each with ``Runtime(parallel_tools=...)`` on (the default) and off:

- two 0.5 s tools in one turn (sync tools on worker threads; async tools on the loop),
- ``Harness.best_of(3)`` whose candidates each call a 0.5 s tool,
- two ``delegate`` calls in one turn, each sub-agent calling a 0.5 s tool.

The model is ``Model.function`` (no latency), so what is printed is the tools' time plus loom_nb's
own. Run: ``.venv/bin/python benchmarks/parallel_tools.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Callable
from typing import Any

from loom_nb import Agent, Model, ModelRequest, Runtime, tool
from loom_nb.runtime import DelegationPolicy, Harness

SECONDS = 0.5


@tool
def wait_sync(name: str) -> str:
    """Wait half a second."""
    time.sleep(SECONDS)
    return name


@tool
async def wait_async(name: str) -> str:
    """Wait half a second."""
    await asyncio.sleep(SECONDS)
    return name


def calls_then_answer(*calls: dict[str, Any]) -> Model:
    def turn(request: ModelRequest) -> Any:
        if request.messages[-1].role == "tool":
            return " | ".join(p.content for p in request.messages[-1].parts)
        return list(calls) if len(calls) > 1 else calls[0]
    return Model.function(turn)


def two_tools(parallel: bool, which: str) -> Agent:
    name = f"wait_{which}"
    return Agent(calls_then_answer(*[{"tool": name, "args": {"name": n}} for n in "ab"]),
                 tools=[wait_sync, wait_async], runtime=Runtime.sdk(parallel_tools=parallel))


def best_of(parallel: bool) -> Agent:
    return Agent(calls_then_answer({"tool": "wait_sync", "args": {"name": "x"}}), tools=[wait_sync],
                 runtime=Runtime.sdk(harness=Harness.best_of(3, parallel=parallel)))


def delegates(parallel: bool) -> Agent:
    subs = {n: Agent(calls_then_answer({"tool": "wait_sync", "args": {"name": n}}), tools=[wait_sync],
                     name=n) for n in ("one", "two")}
    return Agent(calls_then_answer(*[{"tool": "delegate", "args": {"agent": n, "task": "wait"}}
                                     for n in subs]),
                 runtime=Runtime.sdk(parallel_tools=parallel,
                                     delegation=DelegationPolicy.subagents(subs, max_parallel=2)))


def measure(build: Callable[[bool], Agent], parallel: bool, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        agent = build(parallel)
        started = time.perf_counter()
        result = agent.run_sync("go")
        times.append(time.perf_counter() - started)
        assert result.status == "completed", result.error
    return statistics.median(times)


def main() -> None:
    workloads: list[tuple[str, Callable[[bool], Agent]]] = [
        ("two 0.5 s sync tools, one turn", lambda p: two_tools(p, "sync")),
        ("two 0.5 s async tools, one turn", lambda p: two_tools(p, "async")),
        ("best_of(3), 0.5 s candidates", best_of),
        ("two delegates, 0.5 s each", delegates),
    ]
    print(f"{'workload':<34} {'parallel (s)':>13} {'one by one (s)':>15}")
    for label, build in workloads:
        print(f"{label:<34} {measure(build, True):>13.3f} {measure(build, False):>15.3f}")


if __name__ == "__main__":
    main()
