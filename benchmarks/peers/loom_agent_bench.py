"""loom-agent 0.8.2 workloads (the seed's implementation; run in its benchmark venv).

The model is a subclass of ``loom.providers.base.LLMProvider`` injected as ``agent._provider``
(the way loom-agent's own test suite does it), with the provider health check turned off (it
would spend one model call on "ping"). Workloads: turns, session, import, stream.
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

NAME = "loom-agent"


def version() -> str:
    from importlib.metadata import version as v

    return v("loom-agent")


def build():  # type: ignore[no-untyped-def]
    from loom import Agent, Model, Runtime, tool
    from loom.config import PolicyConfig, ToolPolicy, ToolRateLimitPolicy
    from loom.providers.base import CompletionResponse, LLMProvider, TokenUsage
    from loom.types.messages import ToolCall
    from loom.types.stream import TextDelta

    class FakeProvider(LLMProvider):
        def __init__(self, decide=None, stream_tokens: int = 0, pace: float = 0.0):  # type: ignore[no-untyped-def]
            super().__init__()
            self.decide, self.stream_tokens, self.pace = decide, stream_tokens, pace

        async def _complete_request(self, request):  # type: ignore[no-untyped-def]
            return self.decide(request)

        async def _stream_request_events(self, request):  # type: ignore[no-untyped-def]
            import asyncio

            for _ in range(self.stream_tokens):
                if self.pace:
                    await asyncio.sleep(self.pace)
                yield TextDelta(delta=TOKEN)

    def call(i: int, key: str) -> CompletionResponse:
        return CompletionResponse(content="", usage=TokenUsage(50, 10),
                                  tool_calls=[ToolCall(id=f"c{i}", name="lookup", arguments={"key": key})])

    def answer() -> CompletionResponse:
        return CompletionResponse(content=ANSWER, usage=TokenUsage(50, 2))

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return lookup_value(key)

    def make_agent(provider: LLMProvider, **kw):  # type: ignore[no-untyped-def]
        # Raised limits: Runtime.sdk() allows 32 iterations (4 per tool round, so ~8 tool calls)
        # and 64,000 context tokens; tool governance allows 60 calls per minute.
        runtime = Runtime.sdk(max_iterations=100_000, max_context_tokens=10**9,
                              extensions={"provider_health_check": False})
        policy = PolicyConfig(tools=ToolPolicy(rate_limits=ToolRateLimitPolicy(max_calls_per_minute=10**9)))
        agent = Agent(model=Model.openai("fake-model"), instructions="Be brief.", tools=[lookup],
                      runtime=runtime, policy=policy, **kw)
        agent._provider = provider
        agent._provider_resolved = True
        return agent

    return FakeProvider, make_agent, call, answer


async def turns(opts: dict[str, str]) -> dict:
    work_dir()  # loom-agent writes ./.loom/memory/ in the working directory
    FakeProvider, make_agent, call, answer = build()
    state = {"left": 0, "clock": TurnClock(), "ids": 0}

    def decide(request):  # type: ignore[no-untyped-def]
        state["clock"].tick()
        state["left"] -= 1
        state["ids"] += 1
        return call(state["ids"], str(state["left"])) if state["left"] >= 0 else answer()

    agent = make_agent(FakeProvider(decide))

    async def run_once(n: int, clock: TurnClock) -> None:
        state["left"], state["clock"] = n, clock
        result = await agent.run("go")
        assert result.output == ANSWER, (result.state, result.output, result.error)

    return await measure_turns(run_once, ints(opts.get("ns", "10,50,100")), int(opts.get("inner", "3")))


def session_decider(call, answer):  # type: ignore[no-untyped-def]
    ids = [0]

    def decide(request):  # type: ignore[no-untyped-def]
        # A tool call after the user's prompt, then the answer: looks at the last message only.
        if request.messages[-1].get("role") == "tool":
            return answer()
        ids[0] += 1
        return call(ids[0], "7")

    return decide


async def session(opts: dict[str, str]) -> dict:
    """200 runs in one loom-agent Session (its in-process engine, no store: the default).
    Then the same with a FileSessionStore, reopened by a new agent (restore = transcript_only,
    its default: the last 8 transcripts)."""
    from loom import FileSessionStore, SessionConfig

    folder = Path(work_dir())
    FakeProvider, make_agent, call, answer = build()
    agent = make_agent(FakeProvider(session_decider(call, answer)))
    s = agent.session(SessionConfig(id="bench"))

    async def run_one(i: int) -> None:
        result = await s.run(f"question {i}")
        assert result.output == ANSWER, (result.state, result.output, result.error)

    runs = int(opts.get("runs", "200"))
    out = await measure_session(run_one, runs)
    # The same session with loom-agent's store, for the reopen measurement.
    store_path = folder / "sessions.json"
    agent_s = make_agent(FakeProvider(session_decider(call, answer)),
                         session_store=FileSessionStore(store_path))
    s2 = agent_s.session(SessionConfig(id="stored"))
    stored = []
    for i in range(runs):
        t0 = time.perf_counter()
        await s2.run(f"question {i}")
        stored.append((time.perf_counter() - t0) * 1e3)
    out["stored_run_ms"] = stored
    reopen, first = [], []
    for _ in range(int(opts.get("reopens", "5"))):
        agent3 = make_agent(FakeProvider(session_decider(call, answer)),
                            session_store=FileSessionStore(store_path))
        t0 = time.perf_counter()
        s3 = agent3.session(SessionConfig(id="stored"))
        t1 = time.perf_counter()
        result = await s3.run("one more")
        t2 = time.perf_counter()
        assert result.output == ANSWER
        reopen.append((t1 - t0) * 1e3)
        first.append((t2 - t1) * 1e3)
    out.update(reopen_ms=reopen, reopen_first_run_ms=first)
    return out


def import_cold(opts: dict[str, str]) -> dict:
    return measure_import("loom")


async def stream(opts: dict[str, str]) -> dict:
    """Raw streaming overhead: agent.run_streaming() (typed events); no notebook display exists."""
    work_dir()
    FakeProvider, make_agent, _call, _answer = build()
    tokens, pace = int(opts.get("tokens", "2000")), float(opts.get("pace_ms", "0")) / 1e3
    agent = make_agent(FakeProvider(stream_tokens=tokens, pace=pace))

    async def once() -> tuple[float, float, int]:
        deltas = 0
        with Clock() as c:
            async for event in agent.run_streaming("Write a long answer"):
                deltas += event.type == "text_delta"
        return c.cpu, c.wall, deltas

    await once()
    cpu, wall, deltas = await once()
    assert deltas == tokens, deltas
    return {"raw_cpu_per_token_us": cpu * 1e6 / tokens, "raw_wall_ms": wall * 1e3}


def main() -> None:
    run_main(NAME, version, {"import": import_cold, "turns": turns, "session": session, "stream": stream})


if __name__ == "__main__":
    main()
