"""loom_nb workloads (run in loom_nb's benchmark venv; see benchmarks/README.md).

The model is ``Model.function``: an in-process function with zero latency. Workloads:
turns, session, import, load_ext, stream, store, profile.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    measure_import, run_main,
    ANSWER, TOKEN, Clock, TurnClock, current_rss_mb, ints, lookup_value, maxrss_mb,
    measure_session, measure_turns, work_dir,
)

NAME = "loom_nb"


def version() -> str:
    import loom_nb

    return loom_nb.__version__


def make_agent(fn, tool_kind: str = "sync", **runtime):  # type: ignore[no-untyped-def]
    from loom_nb import Agent, Model, Runtime, tool

    if tool_kind == "async":  # loom_nb awaits async tools; sync ones go to a worker thread
        @tool
        async def lookup(key: str) -> str:
            """Look a key up."""
            return lookup_value(key)
    else:
        @tool
        def lookup(key: str) -> str:
            """Look a key up."""
            return lookup_value(key)

    # The default Runtime.sdk() stops a run after 50 model turns; the workload needs 101.
    return Agent(Model.function(fn), "Be brief.", tools=[lookup],
                 runtime=Runtime.sdk(max_turns=None, **runtime))


def replies(style: str):  # type: ignore[no-untyped-def]
    """(tool call, answer) makers. style "response": a ModelResponse with its usage, as every
    peer's fake reports usage; style "dict": the plain turns of Model.function ({"tool": ...} and
    a str), for which loom_nb's test double estimates the request's tokens itself."""
    if style == "dict":
        return (lambda i, key: {"tool": "lookup", "args": {"key": key}}), (lambda: ANSWER)
    from loom_nb import Message, ModelResponse, TextPart, ToolCall, Usage

    def call(i: int, key: str) -> ModelResponse:
        return ModelResponse(message=Message(role="assistant", parts=(
            ToolCall(id=f"c{i}", name="lookup", args={"key": key}),)),
            usage=Usage(input_tokens=50, output_tokens=10, requests=1), stop_reason="tool_use")

    def answer() -> ModelResponse:
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text=ANSWER),)),
                             usage=Usage(input_tokens=50, output_tokens=2, requests=1))

    return call, answer


def tracing_runtime(mode: str) -> dict:
    """``tracing=off``: no tracer (the default); ``tracing=memory``: OpenTelemetry GenAI spans into
    the SDK's in-memory exporter through a SimpleSpanProcessor (the cost of making the spans)."""
    if mode == "off":
        return {}
    if mode != "memory":
        raise SystemExit(f"tracing={mode!r}: use off or memory")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from loom_nb.tracing import Tracing

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(InMemorySpanExporter()))
    return {"tracing": Tracing(provider)}


# -- 1. overhead per model turn ---------------------------------------------------------------------

async def turns(opts: dict[str, str]) -> dict:
    call, answer = replies(opts.get("style", "response"))
    state = {"left": 0, "clock": TurnClock(), "ids": 0}

    def model(request):  # type: ignore[no-untyped-def]
        state["clock"].tick()
        state["left"] -= 1
        state["ids"] += 1
        if state["left"] >= 0:
            return call(state["ids"], str(state["left"]))
        return answer()

    agent = make_agent(model, opts.get("tool", "sync"), **tracing_runtime(opts.get("tracing", "off")))

    async def run_once(n: int, clock: TurnClock) -> None:
        state["left"], state["clock"] = n, clock
        result = await agent.run("go")
        assert result.status == "completed" and result.output == ANSWER, result

    return await measure_turns(run_once, ints(opts.get("ns", "10,50,100")), int(opts.get("inner", "3")))


# -- 2. a long session ------------------------------------------------------------------------------

def session_model(style: str = "response"):  # type: ignore[no-untyped-def]
    call, answer = replies(style)
    ids = [0]

    def model(request):  # type: ignore[no-untyped-def]
        # One tool call after the user's prompt, then the answer: looks at the last message only.
        if request.messages[-1].role == "user":
            ids[0] += 1
            return call(ids[0], "7")
        return answer()

    return model


async def session(opts: dict[str, str]) -> dict:
    """200 runs in one SQLite-backed session; then the session is reopened from a new store
    object (a new connection) and run once more."""
    from loom_nb import SessionConfig, SQLiteStore

    path = Path(work_dir()) / "session.sqlite"
    style = opts.get("style", "response")
    agent = make_agent(session_model(style))
    s = agent.session(SessionConfig(store=str(path)))

    async def run_one(i: int) -> None:
        result = await s.run(f"question {i}")
        assert result.output == ANSWER, result

    runs = int(opts.get("runs", "200"))
    out = await measure_session(run_one, runs)
    n_events = len(s.store.events(session_id=s.id))
    out.update(events_per_run=n_events / runs, messages=len(s.history),
               build_events_per_s=n_events / (sum(out["run_ms"]) / 1e3))
    reopen, first = [], []
    for _ in range(int(opts.get("reopens", "5"))):
        agent2 = make_agent(session_model(style))
        t0 = time.perf_counter()
        s2 = agent2.session(SessionConfig(id=s.id, store=SQLiteStore(path)))
        t1 = time.perf_counter()
        await s2.run("one more")
        t2 = time.perf_counter()
        assert len(s2.history) >= runs * 4, len(s2.history)
        reopen.append((t1 - t0) * 1e3)
        first.append((t2 - t1) * 1e3)
        s2.store.close()
    out.update(reopen_ms=reopen, reopen_first_run_ms=first)
    return out


# -- 3. cold import and %load_ext -----------------------------------------------------------------

def import_cold(opts: dict[str, str]) -> dict:
    return measure_import("loom_nb")


def load_ext(opts: dict[str, str]) -> dict:
    """``%load_ext loom_nb`` in a fresh InteractiveShell (IPython itself is already loaded,
    as it is in a kernel); the timing includes the cold ``import loom_nb`` it triggers."""
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert "loom_nb" not in sys.modules
    rss0, peak0 = current_rss_mb(), maxrss_mb()
    t0, c0 = time.perf_counter(), time.process_time()
    shell.run_line_magic("load_ext", "loom_nb")
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    assert "loom" in shell.magics_manager.magics["line"]
    return {"load_ext_ms": wall * 1e3, "load_ext_cpu_ms": cpu * 1e3, "rss_mb_before": rss0,
            "rss_mb_after": current_rss_mb(), "peak_rss_mb": maxrss_mb(), "peak_rss_mb_before": peak0}


# -- 4. streaming into a notebook display ---------------------------------------------------------

def stream_model(tokens: int, pace_s: float):  # type: ignore[no-untyped-def]
    import asyncio

    async def model(request):  # type: ignore[no-untyped-def]
        for _ in range(tokens):
            if pace_s:
                await asyncio.sleep(pace_s)
            yield TOKEN

    return model


def stream(opts: dict[str, str]) -> dict:
    """The %loom magic in a real InteractiveShell, LOOM_LIVE=1, a publisher that counts messages;
    then, for comparison, the same answer consumed as raw events (agent.stream) with no display."""
    import asyncio
    import os

    os.environ["LOOM_LIVE"] = "1"
    from IPython.core.displaypub import DisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell

    class CountingPublisher(DisplayPublisher):
        def __init__(self, **kw):  # type: ignore[no-untyped-def]
            super().__init__(**kw)
            self.displays = self.updates = self.bytes = 0

        def publish(self, data, metadata=None, source=None, *, transient=None, update=False,
                    **kw):  # type: ignore[no-untyped-def]
            if update:
                self.updates += 1
            else:
                self.displays += 1
            self.bytes += sum(len(v) for v in data.values() if isinstance(v, str))

    tokens, pace = int(opts.get("tokens", "2000")), float(opts.get("pace_ms", "0")) / 1e3
    shell = InteractiveShell.instance()
    publisher = CountingPublisher(shell=shell, parent=shell)
    shell.display_pub = publisher
    shell.run_line_magic("load_ext", "loom_nb")
    agent = make_agent(stream_model(tokens, pace))
    shell.user_ns["agent"] = agent
    shell.run_line_magic("loom", "run -a agent warm up")  # first-run costs
    publisher.displays = publisher.updates = publisher.bytes = 0
    with Clock() as c:
        shell.run_line_magic("loom", "run -a agent Write a long answer")
    display_data = {"cpu_per_token_us": c.cpu * 1e6 / tokens, "wall_ms": c.wall * 1e3,
                    "display_updates": publisher.updates, "display_data": publisher.displays,
                    "published_kb": publisher.bytes / 1024}

    async def raw() -> tuple[float, float, int]:
        deltas = 0
        with Clock() as r:
            async for event in agent.stream("Write a long answer"):
                deltas += event.type == "model.delta"
        return r.cpu, r.wall, deltas

    asyncio.run(raw())  # warm-up
    cpu, wall, deltas = asyncio.run(raw())
    assert deltas == tokens, deltas
    return {**display_data, "raw_cpu_per_token_us": cpu * 1e6 / tokens, "raw_wall_ms": wall * 1e3}


# -- 5. the store ---------------------------------------------------------------------------------

def _events(run_id: str, session_id: str, n: int, start: int):  # type: ignore[no-untyped-def]
    from loom_nb.events import RunEvent

    return [RunEvent(type="tool.result", run_id=run_id, session_id=session_id, seq=start + i,
                     data={"call_id": f"c{start + i}", "name": "lookup", "content": "value 7",
                           "is_error": False}) for i in range(n)]


async def store(opts: dict[str, str]) -> dict:
    from loom_nb import SQLiteStore

    folder = Path(work_dir())
    out: dict = {}
    # Raw writes through the store API: batches as the run loop writes them (it flushes the
    # events of a step at each commit), and one event per transaction.
    for batch, total in ((10, 20_000), (1, 2_000)):
        st = SQLiteStore(folder / f"raw{batch}.sqlite")
        events = _events("run_raw", "ses_raw", total, 0)
        t0 = time.perf_counter()
        for i in range(0, total, batch):
            st.append_events(events[i:i + batch])
        out[f"events_per_s_batch{batch}"] = total / (time.perf_counter() - t0)
        st.close()
    return out


# -- profile (not a comparison: where loom_nb's time goes) ----------------------------------------

async def profile(opts: dict[str, str]) -> dict:
    """cProfile of the run loop: a 100-turn run, and runs 191-200 of a 200-run SQLite session."""
    import cProfile
    import pstats

    from loom_nb import SessionConfig

    def top(prof: cProfile.Profile, limit: int = 25) -> dict:
        stats = pstats.Stats(prof)
        total = stats.total_tt  # type: ignore[attr-defined]
        rows = []
        for (file, line, func), (cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
            rows.append({"where": _short(file, line, func), "calls": nc, "own_s": tt, "cum_s": ct})
        rows.sort(key=lambda r: -r["own_s"])
        by_file: dict[str, float] = {}
        for r in rows:
            key = r["where"].split(":")[0]
            by_file[key] = by_file.get(key, 0.0) + r["own_s"]
        files = sorted(by_file.items(), key=lambda kv: -kv[1])[:15]
        cum = sorted((r for r in rows if r["where"].startswith("loom_nb/")), key=lambda r: -r["cum_s"])
        return {"total_s": total, "own": rows[:limit], "by_file": files, "cum_loom": cum[:limit]}

    style = opts.get("style", "response")
    call, answer = replies(style)
    state = {"left": 0}

    def model(request):  # type: ignore[no-untyped-def]
        state["left"] -= 1
        return call(state["left"], "1") if state["left"] >= 0 else answer()

    agent = make_agent(model)
    state["left"] = 10
    await agent.run("warm")
    prof = cProfile.Profile()
    for _ in range(int(opts.get("turn_runs", "5"))):
        state["left"] = 100
        prof.enable()
        await agent.run("go")
        prof.disable()
    turns_profile = top(prof)

    path = Path(work_dir()) / "profile.sqlite"
    s = make_agent(session_model(style)).session(SessionConfig(store=str(path)))
    early = cProfile.Profile()
    late = cProfile.Profile()
    for i in range(200):
        prof = early if i < 10 else late if i >= 190 else None
        if prof:
            prof.enable()
        await s.run(f"question {i}")
        if prof:
            prof.disable()
    return {"turns": turns_profile, "session_first10": top(early), "session_last10": top(late)}


def _short(file: str, line: int, func: str) -> str:
    if "/benchmarks/" in file:
        file = "benchmarks/" + file.split("/benchmarks/", 1)[1]
    elif "loom_nb/" in file:
        file = "loom_nb/" + file.split("loom_nb/", 1)[1]
    elif "site-packages/" in file:
        file = file.split("site-packages/", 1)[1]
    elif "/lib/python3" in file:
        file = "stdlib/" + file.split("/lib/python3", 1)[1].split("/", 1)[-1]
    return f"{file}:{line}({func})"


def main() -> None:
    run_main(NAME, version, {"import": import_cold, "load_ext": load_ext, "stream": stream,
                             "turns": turns, "session": session, "store": store,
                             "profile": profile})


if __name__ == "__main__":
    main()
