"""What pricing each model response adds to a turn of the run loop (issue 19).

Workload A's shape (``peers/loom_nb_bench.py turns``): one run of 100 tool-call turns with a
zero-latency ``Model.function`` returning a ``ModelResponse`` with usage, and an async tool. Three
ways, interleaved, medians of several repetitions, in µs per model turn:

- ``no pricing``: ``loom_nb.engine.loop.priced`` replaced by a function that returns the usage;
- ``unpriced model``: the function model as it is (provider ``function``: a dict look-up, None);
- ``priced model``: the same model presented as ``anthropic:claude-sonnet-5``, so every response
  is priced by ``loom_nb.cost`` (genai-prices' rates, probed once).

Run: ``.venv/bin/python benchmarks/cost_overhead.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import loom_nb.engine.loop as loop_module
from loom_nb import Agent, Model, Runtime, tool
from loom_nb.messages import Message, TextPart, ToolCall, Usage
from loom_nb.models import ModelResponse

TURNS, REPEAT = 100, 7


@tool
async def step(n: str) -> str:
    """One step."""
    return n


def build(priced: bool) -> Agent:
    count = {"left": 0, "ids": 0}

    def turn(request: Any) -> ModelResponse:
        count["left"] -= 1
        count["ids"] += 1
        usage = Usage(input_tokens=1200, output_tokens=20, cache_read_tokens=900, requests=1)
        if count["left"] >= 0:
            call = ToolCall(id=f"c{count['ids']}", name="step", args={"n": str(count["left"])})
            return ModelResponse(message=Message(role="assistant", parts=(call,)), usage=usage,
                                 stop_reason="tool_use")
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="done"),)),
                             usage=usage)

    model = Model.function(turn)
    if priced:
        model.provider, model.name = "anthropic", "claude-sonnet-5"  # type: ignore[misc]
    agent = Agent(model, tools=[step], runtime=Runtime.sdk(max_turns=None))
    agent._count = count  # type: ignore[attr-defined]
    return agent


async def per_turn(agent: Agent) -> float:
    agent._count["left"] = TURNS  # type: ignore[attr-defined]
    started = time.perf_counter()
    result = await agent.run("go")
    elapsed = time.perf_counter() - started
    assert result.status == "completed", result.error
    return elapsed / (TURNS + 1) * 1e6


async def main() -> None:
    real = loop_module.priced
    ways = {"no pricing": (False, lambda usage, model, name=None: usage),
            "unpriced model": (False, real), "priced model": (True, real)}
    samples: dict[str, list[float]] = {k: [] for k in ways}
    for _ in range(REPEAT):
        for label, (priced, fn) in ways.items():
            loop_module.priced = fn  # type: ignore[assignment]
            agent = build(priced)
            await per_turn(agent)  # warm: imports, rate probes
            samples[label].append(await per_turn(agent))
    loop_module.priced = real
    base = statistics.median(samples["no pricing"])
    print(f"{'':<16} {'µs per turn':>12} {'vs no pricing':>14}")
    for label, values in samples.items():
        median = statistics.median(values)
        print(f"{label:<16} {median:>12.1f} {100 * (median - base) / base:>+13.1f} %")


if __name__ == "__main__":
    asyncio.run(main())
