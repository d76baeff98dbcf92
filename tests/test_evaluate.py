"""loom_nb.evaluate (loom_nb/evaluation.py): bounded concurrency, failures, resume after an interruption, progress."""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import loom_nb
from loom_nb import Agent, ConfigError, InMemoryStore, Model, RuntimeTask, tool
from loom_nb.export import events_df, runs_df
from tests.backends import Backend

STR = pd.StringDtype(na_value=float("nan"))


class Tracker:
    """A model function that answers from the request and records how many ran at once."""

    def __init__(self, delay: float = 0.05) -> None:
        self.delay, self.active, self.peak, self.goals = delay, 0, 0, []

    async def __call__(self, request):
        goal = request.messages[0].text
        if request.messages[-1].role == "tool":
            return f"done: {request.messages[-1].parts[0].content}"
        self.goals.append(goal)
        self.active += 1
        self.peak = max(self.peak, self.active)
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.active -= 1
        if "crash" in goal:
            raise RuntimeError(f"model crashed on {goal}")
        if "tool" in goal:
            return {"tool": "echo", "args": {"text": goal}}
        return f"answer: {goal}"


@tool
def echo(text: str) -> str:
    """Echo the text."""
    return text.upper()


def test_concurrency_is_bounded_and_tasks_overlap() -> None:
    tracker = Tracker()
    agent = Agent(Model.function(tracker), tools=[echo])
    tasks = [f"q{i}" for i in range(10)]
    started = time.monotonic()
    df = loom_nb.evaluate(agent, tasks, concurrency=3, progress=False)
    elapsed = time.monotonic() - started
    assert tracker.peak == 3  # overlapped, never more than 3 at once
    assert elapsed < 10 * 0.05  # sequential would take at least 0.5 s
    assert list(df.goal) == tasks and list(df.output) == [f"answer: q{i}" for i in range(10)]
    assert (df.status == "completed").all() and df.run_id.is_unique


def test_frame_columns_dtypes_and_join_with_runs_df(tmp_path: Path) -> None:
    agent = Agent(Model.function(Tracker(0)), tools=[echo])
    tasks = pd.DataFrame({"id": ["a", "b"], "goal": ["use a tool", "plain"],
                          "inputs": [{"x": 1}, '{"x": 2}'], "criteria": [["c1"], None],
                          "metadata": [{"level": 1}, {"level": 2}]})
    df = loom_nb.evaluate(agent, tasks, store=tmp_path / "e.sqlite", progress=False)
    assert list(df.columns) == [*evaluate_module().EVALUATE_COLUMNS, "metadata_level"]
    assert df["status"].dtype == STR and df["input_tokens"].dtype == "Int64"
    assert df["latency_ms"].dtype == "float64" and df["resumed"].dtype == "boolean"
    assert str(df["started_at"].dtype) == "datetime64[us, UTC]"
    a, b = df.iloc[0], df.iloc[1]
    assert (a.task_id, a.session_id, a.tool_calls, a.output, a.turns, a.variant, a.epoch) == (
        "a", "eval-agent-a", 1, "done: USE A TOOL", 2, "agent", 1)
    assert (b.task_id, b.tool_calls, b.output, b.attempt) == ("b", 0, "answer: plain", 1)
    assert pd.isna(a.quality_verdict) and a.latency_ms > 0 and a.total_tokens > 0
    runs = runs_df(tmp_path / "e.sqlite")
    joined = df.merge(runs, on="run_id", suffixes=("", "_run"))
    assert list(joined.metadata_level) == [1, 2]
    assert list(joined.task_inputs) == ['{"x": 1}', '{"x": 2}']
    assert (joined.input_tokens == joined.input_tokens_run).all()
    assert df.attrs["store"] == str(tmp_path / "e.sqlite")
    events = events_df(tmp_path / "e.sqlite")
    assert set(events.run_id) == set(df.run_id)


def evaluate_module():
    """The module behind ``loom_nb.evaluate``."""
    return importlib.import_module("loom_nb.evaluation")


def test_failures_in_some_tasks_do_not_stop_the_others() -> None:
    agent = Agent(Model.function(Tracker(0.01)))
    tasks = [RuntimeTask("ok 1"), RuntimeTask("crash 2"), "ok 3", RuntimeTask("crash 4")]
    df = loom_nb.evaluate(agent, tasks, concurrency=2, progress=False)
    assert list(df.status) == ["completed", "failed", "completed", "failed"]
    assert list(df.output[[0, 2]]) == ["answer: ok 1", "answer: ok 3"]
    assert df.error[1] == "RuntimeError: model crashed on crash 2"
    assert df.error_type[3] == "RuntimeError" and pd.isna(df.error[0])


def test_resume_skips_answered_tasks_and_reruns_crashed_ones() -> None:
    store = InMemoryStore()
    first = Tracker(0)
    tasks = ["a", "crash b", "c"]
    loom_nb.evaluate(Agent(Model.function(first)), tasks, store=store, progress=False)
    again = Tracker(0)
    df = loom_nb.evaluate(Agent(Model.function(again)), tasks, store=store, progress=False)
    assert again.goals == ["crash b"]  # only the failed task ran again
    assert list(df.resumed) == [True, False, True]
    assert list(df.attempt) == [1, 2, 1] and df.session_id[1].endswith(".2")
    third = Tracker(0)
    loom_nb.evaluate(Agent(Model.function(third)), tasks, store=store, progress=False, rerun=())
    assert third.goals == []  # rerun=(): an error counts as done
    runs = runs_df(store)
    assert sorted(runs.superseded.tolist()) == [False, False, False, True]
    assert runs[runs.superseded].session_id.tolist() == [df.session_id[1].removesuffix(".2")]
    fresh = Tracker(0)
    loom_nb.evaluate(Agent(Model.function(fresh)), tasks, store=store, progress=False,
                     resume=False)
    assert sorted(fresh.goals) == ["a", "c", "crash b"]


def test_resume_after_the_process_is_killed(backend: Backend, tmp_path: Path) -> None:
    path = backend.spec
    log = tmp_path / "goals.log"
    # Tasks 0-4 answer at once; task 5 and later call a tool that hangs, so the process is
    # killed mid-evaluation, after those runs' first model response was stored.
    code = textwrap.dedent(f"""
        import asyncio, loom_nb
        from loom_nb import Agent, Model, tool
        @tool
        async def wait() -> str:
            \"\"\"Wait.\"\"\"
            await asyncio.sleep(3600)
            return "never"
        async def fn(request):
            goal = request.messages[0].text
            if int(goal.split()[1]) >= 5:
                return {{"tool": "wait", "args": {{}}}}
            return "answer " + goal
        async def logged(request):
            out = await fn(request)
            with open({str(log)!r}, "a") as f:
                f.write(request.messages[0].text + "\\n")
            return out
        loom_nb.evaluate(Agent(Model.function(logged), tools=[wait]),
                         [f"task {{i}}" for i in range(8)],
                         store={str(path)!r}, concurrency=2, progress=False)
    """)
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if log.exists() and "task 6" in log.read_text():
                break
            time.sleep(0.05)
        else:
            pytest.fail("the evaluation did not reach task 6")
        time.sleep(0.2)
        # A second process meanwhile: the runs the first one is running are not started twice.
        meanwhile = Tracker(0)
        mid = loom_nb.evaluate(Agent(Model.function(meanwhile)), [f"task {i}" for i in range(8)],
                               store=path, progress=False)
        assert meanwhile.goals == ["task 7"]
        assert list(mid.outcome[5:]) == ["running", "running", "answered"]
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    before = runs_df(path)
    assert set(before[before.status == "completed"].prompt) == {f"task {i}" for i in range(5)} | {
        "task 7"}
    assert set(before[before.status == "running"].prompt) == {"task 5", "task 6"}
    killed_tokens = before[before.status == "running"].input_tokens.sum()

    tracker = Tracker(0)
    df = loom_nb.evaluate(Agent(Model.function(tracker)), [f"task {i}" for i in range(8)],
                          store=path, progress=False)
    assert sorted(tracker.goals) == ["task 5", "task 6"]
    assert list(df.resumed) == [True] * 5 + [False] * 2 + [True]
    assert list(df.output) == [f"answer task {i}" for i in range(5)] + [
        f"answer: task {i}" for i in range(5, 8)]
    assert list(df.attempt) == [1] * 5 + [2, 2, 1]  # the killed attempts stay in the store
    after = runs_df(path)
    killed = after[after.status == "interrupted"]
    assert set(killed.prompt) == {"task 5", "task 6"} and killed.superseded.all()
    assert (killed.error_type == "ProcessEnded").all()
    assert set(after[~after.superseded].run_id) == set(df.run_id)  # what the metrics count
    assert killed_tokens == 0  # while running, the record's usage is not yet counted
    assert (killed.input_tokens > 0).all() and (killed.turns == 1).all()  # from their events


def test_task_table_validation() -> None:
    agent = Agent(Model.function(Tracker(0)))
    with pytest.raises(ConfigError, match="needs an 'input' \\(or 'goal'\\) column"):
        loom_nb.evaluate(agent, pd.DataFrame({"prompt": ["x"]}), progress=False)
    with pytest.raises(ConfigError, match="task id 'x' appears twice"):
        loom_nb.evaluate(agent, pd.DataFrame({"id": ["x", "x"], "goal": ["a", "b"]}),
                         progress=False)
    with pytest.raises(ConfigError, match="column 'inputs' must be a dict"):
        loom_nb.evaluate(agent, pd.DataFrame({"goal": ["a"], "inputs": [[1]]}), progress=False)
    with pytest.raises(ConfigError, match="positive int"):
        loom_nb.evaluate(agent, ["a"], concurrency=0, progress=False)
    # Identical tasks get distinct, stable ids.
    df = loom_nb.evaluate(agent, ["same", "same"], progress=False)
    assert df.task_id[1] == df.task_id[0] + "-2"


def test_aevaluate_for_await() -> None:
    async def main() -> pd.DataFrame:
        return await loom_nb.aevaluate(Agent(Model.function(Tracker(0))), ["x", "y"],
                                                progress=False)
    df = asyncio.run(main())
    assert list(df.output) == ["answer: x", "answer: y"]


def test_text_progress_on_stderr(capsys) -> None:
    loom_nb.evaluate(Agent(Model.function(Tracker(0))), ["a", "crash b"])
    err = capsys.readouterr().err
    assert "evaluate: 2/2 samples done (0 from the store, 1 not completed)" in err


def test_widget_progress_counts_tasks() -> None:
    pytest.importorskip("ipywidgets")
    module = importlib.import_module("loom_nb._eval_progress")
    _WidgetProgress, in_notebook = module._WidgetProgress, module.in_notebook

    assert not in_notebook()  # plain pytest process: no kernel, so text progress is used
    bar = _WidgetProgress(3)
    bar.every = 0
    bar.advance({"status": "completed"})
    bar.advance({"status": "failed", "resumed": True})
    assert bar.bar.value == 2 and "1 from the store" in bar.label.value
    bar.advance({"status": "completed"})
    assert bar.bar.bar_style == "warning"


def test_package_attribute_stays_the_function() -> None:
    import types

    assert isinstance(loom_nb.evaluate, types.FunctionType)
    code = ("import loom_nb.evaluation, loom_nb, sys, types; from loom_nb import Agent, Model; "
            "assert isinstance(loom_nb.evaluate, types.FunctionType); "
            "df = loom_nb.evaluate(Agent(Model.function(lambda r: 'ok')), ['x'], progress=False); "
            "print(df.output[0])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ})
    assert out.stdout.strip() == "ok"


_WORKER = textwrap.dedent("""
    import json, sys, loom_nb
    from loom_nb import Agent, Model
    store, part, parts = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    tasks = [{"id": f"t{i}", "goal": f"task {i}"} for i in range(int(sys.argv[4]))][part::parts]
    import pandas as pd
    agent = Agent(Model.function(lambda r: "answer " + r.messages[0].text), name="shared")
    df = loom_nb.evaluate(agent, pd.DataFrame(tasks), store=store, concurrency=3, progress=False)
    print(json.dumps(df[["task_id", "status", "output", "session_id"]].to_dict("records")))
""")


def test_evaluate_from_three_processes_into_one_postgres_store(postgres_dsn: str,
                                                               tmp_path: Path) -> None:
    count = 30
    workers = [subprocess.Popen([sys.executable, "-c", _WORKER, postgres_dsn, str(part), "3",
                                 str(count)], stdout=subprocess.PIPE, text=True)
               for part in range(3)]
    rows = []
    for worker in workers:
        out, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0
        rows += json.loads(out)
    assert sorted(r["task_id"] for r in rows) == sorted(f"t{i}" for i in range(count))
    assert {r["status"] for r in rows} == {"completed"}

    # Every task is in the shared store: evaluating again here runs none of them.
    tasks = pd.DataFrame([{"id": f"t{i}", "goal": f"task {i}"} for i in range(count)])
    never = Tracker(0)
    df = loom_nb.evaluate(Agent(Model.function(never), name="shared"), tasks, store=postgres_dsn,
                          progress=False)
    assert never.goals == [] and df.resumed.all()
    assert list(df.output) == [f"answer task {i}" for i in range(count)]
    runs = runs_df(postgres_dsn)
    assert len(runs) == count and set(runs.status) == {"completed"}

    # The same evaluation in one process on SQLite gives the same frames, ids and times aside.
    local = str(tmp_path / "local.sqlite")
    agent = Agent(Model.function(lambda r: "answer " + r.messages[0].text), name="shared")
    here = loom_nb.evaluate(agent, tasks, store=local, progress=False)
    varying = ["run_id", "resumed", "latency_ms", "started_at", "finished_at"]
    pd.testing.assert_frame_equal(df.drop(columns=varying), here.drop(columns=varying))
    by_run = ["run_id", "started_at", "finished_at", "duration_ms"]
    shared_runs = runs_df(postgres_dsn).sort_values("session_id").reset_index(drop=True)
    local_runs = runs_df(local).sort_values("session_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(shared_runs.drop(columns=by_run + ["order"]),
                                  local_runs.drop(columns=by_run + ["order"]))
