"""OpenAI Agents SDK workloads (run in its benchmark venv; see benchmarks/README.md).

The model is a minimal subclass of ``agents.models.interface.Model`` that returns canned
Responses-API items with usage. Tracing is disabled (the default exporter would try to upload).
Workloads: turns, session, import, stream, store.
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

NAME = "openai-agents"


def version() -> str:
    from importlib.metadata import version as v

    return v("openai-agents")


def build():  # type: ignore[no-untyped-def]
    """The fake model class, the tool, and helpers (imported lazily: `import` is a workload)."""
    from agents import Agent, function_tool, set_tracing_disabled
    from agents.items import ModelResponse
    from agents.models.interface import Model
    from agents.usage import Usage
    from openai.types.responses import (
        Response, ResponseCompletedEvent, ResponseFunctionToolCall, ResponseOutputMessage,
        ResponseOutputText, ResponseTextDeltaEvent, ResponseUsage,
    )
    from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

    set_tracing_disabled(True)

    def usage(out: int) -> Usage:
        return Usage(requests=1, input_tokens=50, output_tokens=out, total_tokens=50 + out)

    def call(i: int, key: str) -> ModelResponse:
        item = ResponseFunctionToolCall(type="function_call", call_id=f"c{i}", name="lookup",
                                        arguments='{"key": "%s"}' % key, id=f"fc{i}",
                                        status="completed")
        return ModelResponse(output=[item], usage=usage(10), response_id=None)

    def message(text: str) -> ResponseOutputMessage:
        return ResponseOutputMessage(type="message", id="msg", role="assistant", status="completed",
                                     content=[ResponseOutputText(type="output_text", text=text,
                                                                 annotations=[])])

    def answer() -> ModelResponse:
        return ModelResponse(output=[message(ANSWER)], usage=usage(2), response_id=None)

    class FakeModel(Model):
        """``decide(input)`` returns the ModelResponse; ``stream_tokens`` streams a text answer."""

        def __init__(self, decide=None, stream_tokens: int = 0, pace: float = 0.0):  # type: ignore[no-untyped-def]
            self.decide, self.stream_tokens, self.pace = decide, stream_tokens, pace

        async def get_response(self, system_instructions, input, model_settings, tools,  # type: ignore[no-untyped-def]
                               output_schema, handoffs, tracing, *, previous_response_id=None,
                               conversation_id=None, prompt=None, **kw):
            return self.decide(input)

        async def stream_response(self, system_instructions, input, model_settings, tools,  # type: ignore[no-untyped-def]
                                  output_schema, handoffs, tracing, *, previous_response_id=None,
                                  conversation_id=None, prompt=None, **kw):
            import asyncio

            n = self.stream_tokens
            for i in range(n):
                if self.pace:
                    await asyncio.sleep(self.pace)
                yield ResponseTextDeltaEvent(type="response.output_text.delta", item_id="msg",
                                             output_index=0, content_index=0, delta=TOKEN,
                                             logprobs=[], sequence_number=i)
            response = Response(
                id="resp", created_at=0, model="fake", object="response",
                output=[message(TOKEN * n)], tool_choice="auto", tools=[], top_p=None,
                parallel_tool_calls=False, status="completed",
                usage=ResponseUsage(input_tokens=50, output_tokens=n, total_tokens=50 + n,
                                    input_tokens_details=InputTokensDetails.model_validate(
                                        {"cached_tokens": 0, "cache_write_tokens": 0}),
                                    output_tokens_details=OutputTokensDetails(reasoning_tokens=0)))
            yield ResponseCompletedEvent(type="response.completed", response=response,
                                         sequence_number=n)

    @function_tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return lookup_value(key)

    def make_agent(model: Model) -> Agent:
        return Agent(name="bench", instructions="Be brief.", model=model, tools=[lookup])

    return FakeModel, make_agent, call, answer


# The default max_turns is 10; the workload needs 101 model turns per run.
MAX_TURNS = 1_000


async def turns(opts: dict[str, str]) -> dict:
    from agents import Runner

    FakeModel, make_agent, call, answer = build()
    state = {"left": 0, "clock": TurnClock(), "ids": 0}

    def decide(input):  # type: ignore[no-untyped-def]
        state["clock"].tick()
        state["left"] -= 1
        state["ids"] += 1
        return call(state["ids"], str(state["left"])) if state["left"] >= 0 else answer()

    agent = make_agent(FakeModel(decide))

    async def run_once(n: int, clock: TurnClock) -> None:
        state["left"], state["clock"] = n, clock
        result = await Runner.run(agent, "go", max_turns=MAX_TURNS)
        assert result.final_output == ANSWER, result.final_output

    return await measure_turns(run_once, ints(opts.get("ns", "10,50,100")), int(opts.get("inner", "3")))


def session_decider(call, answer):  # type: ignore[no-untyped-def]
    ids = [0]

    def decide(input):  # type: ignore[no-untyped-def]
        # A tool call after the user's prompt, then the answer: looks at the last item only.
        last = input[-1] if isinstance(input, list) else {"role": "user"}
        kind = last.get("type") if isinstance(last, dict) else getattr(last, "type", None)
        if kind == "function_call_output":
            return answer()
        ids[0] += 1
        return call(ids[0], "7")

    return decide


async def session(opts: dict[str, str]) -> dict:
    """200 runs in one SQLiteSession (a file, like loom_nb's store); then a new SQLiteSession
    object on the same file is opened and run once more."""
    from agents import Runner, SQLiteSession

    FakeModel, make_agent, call, answer = build()
    agent = make_agent(FakeModel(session_decider(call, answer)))
    path = Path(work_dir()) / "session.sqlite"
    sess = SQLiteSession("bench", db_path=path)

    async def run_one(i: int) -> None:
        result = await Runner.run(agent, f"question {i}", session=sess, max_turns=MAX_TURNS)
        assert result.final_output == ANSWER

    runs = int(opts.get("runs", "200"))
    out = await measure_session(run_one, runs)
    items = len(await sess.get_items())
    out.update(messages=items, build_items_per_s=items / (sum(out["run_ms"]) / 1e3))
    sess.close()
    reopen, first = [], []
    for _ in range(int(opts.get("reopens", "5"))):
        t0 = time.perf_counter()
        s2 = SQLiteSession("bench", db_path=path)
        loaded = await s2.get_items()  # the history is read lazily; count the read as the reopen
        t1 = time.perf_counter()
        await Runner.run(agent, "one more", session=s2, max_turns=MAX_TURNS)
        t2 = time.perf_counter()
        assert len(loaded) >= runs * 4, len(loaded)
        reopen.append((t1 - t0) * 1e3)
        first.append((t2 - t1) * 1e3)
        s2.close()
    out.update(reopen_ms=reopen, reopen_first_run_ms=first)
    return out


def import_cold(opts: dict[str, str]) -> dict:
    return measure_import("agents")


async def stream(opts: dict[str, str]) -> dict:
    """Raw streaming overhead: Runner.run_streamed + stream_events(); no notebook display exists."""
    from agents import Runner

    FakeModel, make_agent, _call, _answer = build()
    tokens, pace = int(opts.get("tokens", "2000")), float(opts.get("pace_ms", "0")) / 1e3
    agent = make_agent(FakeModel(stream_tokens=tokens, pace=pace))

    async def once() -> tuple[float, float, int]:
        deltas = 0
        with Clock() as c:
            result = Runner.run_streamed(agent, "Write a long answer", max_turns=MAX_TURNS)
            async for event in result.stream_events():
                if event.type == "raw_response_event" and event.data.type == "response.output_text.delta":
                    deltas += 1
        assert result.final_output == TOKEN * tokens
        return c.cpu, c.wall, deltas

    await once()
    cpu, wall, deltas = await once()
    assert deltas == tokens, deltas
    return {"raw_cpu_per_token_us": cpu * 1e6 / tokens, "raw_wall_ms": wall * 1e3}


async def store(opts: dict[str, str]) -> dict:
    """SQLiteSession.add_items throughput (items are conversation items, its unit of storage)."""
    from agents import SQLiteSession

    folder = Path(work_dir())
    out: dict = {}
    for batch, total in ((10, 20_000), (1, 2_000)):
        sess = SQLiteSession(f"raw{batch}", db_path=folder / f"raw{batch}.sqlite")
        items = [{"type": "function_call_output", "call_id": f"c{i}", "output": "value 7"}
                 for i in range(total)]
        t0 = time.perf_counter()
        for i in range(0, total, batch):
            await sess.add_items(items[i:i + batch])
        out[f"events_per_s_batch{batch}"] = total / (time.perf_counter() - t0)
        sess.close()
    return out


def main() -> None:
    run_main(NAME, version, {"import": import_cold, "turns": turns, "session": session, "stream": stream,
                        "store": store})


if __name__ == "__main__":
    main()
