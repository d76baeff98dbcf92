"""pydantic-ai workloads (run in the pydantic-ai benchmark venv; see benchmarks/README.md).

The model is ``FunctionModel`` with an async function that returns a ``ModelResponse`` carrying
its own usage (so pydantic-ai does not estimate tokens by walking the messages).
Workloads: turns, session, import, stream.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    measure_import, run_main,
    ANSWER, TOKEN, Clock, TurnClock, ints, lookup_value, measure_session, measure_turns, work_dir,
)

NAME = "pydantic-ai"


def version() -> str:
    from importlib.metadata import version as v

    return v("pydantic-ai-slim")


def make_agent(function=None, stream_function=None):  # type: ignore[no-untyped-def]
    from pydantic_ai import Agent
    from pydantic_ai.models.function import FunctionModel

    model = (FunctionModel(function) if stream_function is None
             else FunctionModel(stream_function=stream_function))
    agent = Agent(model, instructions="Be brief.")

    @agent.tool_plain
    def lookup(key: str) -> str:
        """Look a key up."""
        return lookup_value(key)

    return agent


def no_limits():  # type: ignore[no-untyped-def]
    from pydantic_ai.usage import UsageLimits

    # The default UsageLimits(request_limit=50) stops a run before its 51st model request.
    return UsageLimits(request_limit=None)


def responses():  # type: ignore[no-untyped-def]
    from pydantic_ai.messages import ModelResponse, TextPart, ToolCallPart
    from pydantic_ai.usage import RequestUsage

    def call(i: int, key: str) -> ModelResponse:
        return ModelResponse(parts=[ToolCallPart("lookup", {"key": key}, tool_call_id=f"c{i}")],
                             usage=RequestUsage(input_tokens=50, output_tokens=10))

    def answer() -> ModelResponse:
        return ModelResponse(parts=[TextPart(ANSWER)], usage=RequestUsage(input_tokens=50, output_tokens=2))

    return call, answer


async def turns(opts: dict[str, str]) -> dict:
    call, answer = responses()
    state = {"left": 0, "clock": TurnClock(), "ids": 0}

    async def model(messages, info):  # type: ignore[no-untyped-def]
        state["clock"].tick()
        state["left"] -= 1
        state["ids"] += 1
        if state["left"] >= 0:
            return call(state["ids"], str(state["left"]))
        return answer()

    agent = make_agent(model)
    limits = no_limits()

    async def run_once(n: int, clock: TurnClock) -> None:
        state["left"], state["clock"] = n, clock
        result = await agent.run("go", usage_limits=limits)
        assert result.output == ANSWER, result.output

    return await measure_turns(run_once, ints(opts.get("ns", "10,50,100")), int(opts.get("inner", "3")))


def session_model():  # type: ignore[no-untyped-def]
    from pydantic_ai.messages import ModelRequest, ToolReturnPart

    call, answer = responses()
    ids = [0]

    async def model(messages, info):  # type: ignore[no-untyped-def]
        # A tool call after the user's prompt, then the answer: looks at the last message only.
        last = messages[-1]
        if isinstance(last, ModelRequest) and any(isinstance(p, ToolReturnPart) for p in last.parts):
            return answer()
        ids[0] += 1
        return call(ids[0], "7")

    return model


async def session(opts: dict[str, str]) -> dict:
    """200 runs continuing one message_history. pydantic-ai has no session store: its documented
    persistence is the message list as JSON (ModelMessagesTypeAdapter), so 'reopen' is loading
    that JSON back and running once more."""
    from pydantic_ai.messages import ModelMessagesTypeAdapter

    agent = make_agent(session_model())
    history: list = []

    async def run_one(i: int) -> None:
        nonlocal history
        result = await agent.run(f"question {i}", message_history=history)
        assert result.output == ANSWER
        history = result.all_messages()

    out = await measure_session(run_one, int(opts.get("runs", "200")))
    path = Path(work_dir()) / "history.json"
    path.write_bytes(ModelMessagesTypeAdapter.dump_json(history))
    reopen, first = [], []
    for _ in range(int(opts.get("reopens", "5"))):
        t0 = time.perf_counter()
        loaded = ModelMessagesTypeAdapter.validate_json(path.read_bytes())
        t1 = time.perf_counter()
        await agent.run("one more", message_history=loaded)
        t2 = time.perf_counter()
        reopen.append((t1 - t0) * 1e3)
        first.append((t2 - t1) * 1e3)
    out.update(messages=len(history), reopen_ms=reopen, reopen_first_run_ms=first)
    return out


def import_cold(opts: dict[str, str]) -> dict:
    return measure_import("pydantic_ai")


async def stream(opts: dict[str, str]) -> dict:
    """Raw streaming overhead: run_stream + stream_text(delta=True); pydantic-ai has no notebook
    display to drive."""
    import asyncio

    tokens, pace = int(opts.get("tokens", "2000")), float(opts.get("pace_ms", "0")) / 1e3

    async def model(messages, info):  # type: ignore[no-untyped-def]
        for _ in range(tokens):
            if pace:
                await asyncio.sleep(pace)
            yield TOKEN

    agent = make_agent(stream_function=model)

    async def once() -> tuple[float, float, int]:
        chunks = 0
        with Clock() as c:
            async with agent.run_stream("Write a long answer") as result:
                async for _delta in result.stream_text(delta=True, debounce_by=None):
                    chunks += 1
        return c.cpu, c.wall, chunks

    await once()
    cpu, wall, chunks = await once()
    return {"raw_cpu_per_token_us": cpu * 1e6 / tokens, "raw_wall_ms": wall * 1e3, "chunks": chunks}


def main() -> None:
    run_main(NAME, version, {"import": import_cold, "turns": turns, "session": session, "stream": stream})


if __name__ == "__main__":
    main()
