"""Evaluation as a research instrument (issue 20): honest resume, task tables, scorers,
metrics, rescore, report. Real agents (Model.function), real stores."""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from pathlib import Path

import pandas as pd
import pytest

import loom_nb
from loom_nb import Agent, ConfigError, InMemoryStore, Model, Runtime, Score, tool
from loom_nb import metrics
from loom_nb.errors import ModelRateLimitError
from loom_nb.evaluation import outcome
from loom_nb.export import events_df, feedback_df, messages_df, runs_df, tool_calls_df
from loom_nb.quality import QualityGate
from loom_nb.scoring import exact, includes, json_match, model_graded, numeric, regex


def answers(table: dict[str, str]):
    """A model that answers each goal from ``table`` (a tool call for goals starting 'tool')."""
    calls: list[str] = []

    def fn(request):
        goal = request.messages[0].text
        if request.messages[-1].role == "tool":
            return table.get(goal, "?")
        calls.append(goal)
        if goal.startswith("tool"):
            return {"tool": "echo", "args": {"text": goal}}
        if goal.startswith("flaky") and calls.count(goal) == 1:
            raise ModelRateLimitError("slow down")
        return table.get(goal, "?")
    fn.calls = calls  # type: ignore[attr-defined]
    return fn


@tool
def echo(text: str) -> str:
    """Echo the text."""
    return text


# -- 1. honest resume ------------------------------------------------------------------------------

def test_outcome_rule_is_by_error_class_not_status() -> None:
    assert outcome("completed", None) == "answered"
    assert outcome("failed", "QualityGateFailed") == "answered"  # a wrong answer is a result
    assert outcome("failed", "ModelRateLimitError") == "error"
    assert outcome("failed", None) == "error"
    assert [outcome(s, None) for s in ("cancelled", "interrupted", "limit", "needs_approval")] == [
        "cancelled", "interrupted", "limit", "needs_approval"]
    with pytest.raises(ConfigError, match="never run again"):
        loom_nb.evaluate(Agent(Model.function(lambda r: "x")), ["a"], rerun=("failed",),
                         progress=False)


def test_a_wrong_answer_is_never_rerun_and_a_crash_is(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    gate = QualityGate.check(lambda output: output == "right")
    tasks = pd.DataFrame({"id": ["w", "r", "f"], "input": ["wrong one", "right one", "flaky one"],
                          "target": ["right"] * 3})
    table = {"wrong one": "nope", "right one": "right", "flaky one": "right"}
    first = answers(table)
    agent = Agent(Model.function(first), runtime=Runtime(quality=gate))
    df = loom_nb.evaluate(agent, tasks, store=store, scorers=[exact()], progress=False)
    assert list(df.status) == ["failed", "completed", "failed"]
    assert df.error_type.fillna("-").tolist() == ["QualityGateFailed", "-", "ModelRateLimitError"]
    assert list(df.outcome) == ["answered", "answered", "error"]
    assert df.score_exact.tolist()[:2] == [0.0, 1.0] and math.isnan(df.score_exact[2])

    again = answers(table)
    again.calls.append("flaky one")  # the retry succeeds
    df2 = loom_nb.evaluate(Agent(Model.function(again), runtime=Runtime(quality=gate)), tasks,
                           store=store, scorers=[exact()], progress=False)
    assert again.calls == ["flaky one", "flaky one"]  # only the crash ran again
    assert list(df2.resumed) == [True, True, False] and list(df2.attempt) == [1, 1, 2]
    assert df2.score_exact.tolist() == [0.0, 1.0, 1.0]
    runs = runs_df(store)
    assert runs.superseded.sum() == 1
    assert runs[runs.superseded].error_type.tolist() == ["ModelRateLimitError"]


def test_task_ids_that_look_like_attempts_do_not_collide() -> None:
    store = InMemoryStore()
    tasks = pd.DataFrame({"id": ["a", "a.2", "a@2"], "input": ["x", "y", "z"]})
    df = loom_nb.evaluate(Agent(Model.function(lambda r: r.messages[0].text)), tasks, store=store,
                          epochs=2, progress=False)
    assert df.session_id.is_unique and len(df) == 6
    assert list(df.output) == ["x", "x", "y", "y", "z", "z"]
    with pytest.raises(ConfigError, match="would share the session"):
        loom_nb.evaluate({"A": Agent(Model.function(lambda r: "")),
                          "A-x": Agent(Model.function(lambda r: ""))},
                         pd.DataFrame({"id": ["x-1", "1"], "input": ["p", "q"]}), progress=False)


# -- 2. task tables and identity columns -----------------------------------------------------------

def test_task_table_columns_are_kept_and_every_frame_names_the_sample(tmp_path: Path) -> None:
    store = tmp_path / "t.sqlite"
    tasks = pd.DataFrame({"id": ["t1", "t2"], "input": ["tool a", "plain b"],
                          "target": ["tool a", "x"], "difficulty": ["hard", "easy"],
                          "source": ["gsm", None]})
    agents = {"A": Agent(Model.function(answers({"tool a": "tool a", "plain b": "y"})),
                         tools=[echo]),
              "B": Agent(Model.function(answers({"tool a": "no", "plain b": "x"})), tools=[echo])}
    df = loom_nb.evaluate(agents, tasks, epochs=2, store=store, scorers=[exact()],
                          progress=False)
    assert len(df) == 8 and set(df.variant) == {"A", "B"} and set(df.epoch) == {1, 2}
    assert df.metadata_difficulty.tolist()[:2] == ["hard", "hard"]
    assert pd.isna(df.metadata_source[2]) and df.target[0] == "tool a"
    for frame in (runs_df(store), events_df(store), messages_df(store), tool_calls_df(store),
                  feedback_df(store)):
        assert {"task_id", "epoch", "variant"} <= set(frame.columns)
        assert frame.task_id.notna().all() and set(frame.variant) == {"A", "B"}, frame.columns
    runs = runs_df(store)
    assert runs.metadata_difficulty.notna().all() and "metadata_loom_eval" not in runs
    assert set(zip(runs.variant, runs.task_id, runs.epoch)) == set(
        zip(df.variant, df.task_id, df.epoch))
    with pytest.raises(ConfigError, match="both an 'input' and a 'goal'"):
        loom_nb.evaluate(agents["A"], pd.DataFrame({"input": ["a"], "goal": ["b"]}),
                         progress=False)


# -- 3. scorers ------------------------------------------------------------------------------------

def run_one(output: str, target, scorer):
    agent = Agent(Model.function(lambda r: output))
    df = loom_nb.evaluate(agent, [{"input": "q", "target": target}], scorers=[scorer],
                          progress=False)
    name = df.attrs["scorers"][0]
    return df[f"score_{name}"][0], df[f"score_{name}_answer"][0], df[f"score_{name}_explanation"][0]


def test_built_in_scorers() -> None:
    assert run_one("  Paris ", "paris", exact())[0] == 1.0
    assert run_one("Paris!", "paris", exact())[0] == 0.0
    assert run_one("It is Paris.", ["Lyon", "paris"], includes())[:2] == (1.0, "paris")
    assert run_one("answer: 42 apples", r"\d+ apples", regex())[:2] == (1.0, "42 apples")
    assert run_one("x = 3.14159", None, regex(r"3\.14"))[0] == 1.0
    assert run_one("The total is 1,000.2", 1000, numeric(tolerance=0.5))[:2] == (1.0, "1,000.2")
    assert run_one("about 105", 100, numeric(tolerance=0.1, relative=True))[0] == 1.0
    assert run_one("about 115", 100, numeric(tolerance=0.1, relative=True))[0] == 0.0
    assert run_one('```json\n{"a": 1, "b": 2}\n```', {"a": 1, "b": 2}, json_match())[0] == 1.0
    assert run_one('{"a": 1, "b": 3}', {"a": 1, "b": 2}, json_match())[0] == 0.5
    assert run_one('{"a": 1, "b": 3}', {"a": 1, "b": 2}, json_match(keys=["a"]))[0] == 1.0
    value, _, why = run_one("not json", {"a": 1}, json_match())
    assert value == 0.0 and "not JSON" in why


def test_regex_scorer_is_linear_time_on_hostile_patterns() -> None:
    value = run_one("a" * 100_000 + "!", None, regex(r"(a+)+$"))[0]
    assert value == 0.0  # with backtracking this would not end
    with pytest.raises(ConfigError, match="not a valid RE2 pattern"):
        regex(r"(a)\1")


def test_custom_scorers_sync_async_and_broken_ones() -> None:
    def length(result, task) -> Score:
        return Score(len(result.output) / 10, answer=result.output, explanation=task.task_id)

    async def slow(result, task) -> bool:
        await asyncio.sleep(0)
        return result.output == task.target

    def boom(result, task):
        raise SystemExit(3)

    def bad(result, task):
        return "yes"

    df = loom_nb.evaluate(Agent(Model.function(lambda r: "hello")),
                          [{"id": "q", "input": "q", "target": "hello"}],
                          scorers=[length, slow, boom, {"bad": bad}.get("bad")], progress=False)
    row = df.iloc[0]
    assert (row.score_length, row.score_length_answer, row.score_length_explanation) == (
        0.5, "hello", "q")
    assert row.score_slow == 1.0 and math.isnan(row.score_boom)
    assert "raised SystemExit" in row.score_boom_explanation
    assert math.isnan(row.score_bad) and "returned str" in row.score_bad_explanation
    with pytest.raises(ConfigError, match="Pass a dict"):
        loom_nb.evaluate(Agent(Model.function(lambda r: "")), ["q"], scorers=[lambda r, t: 1],
                         progress=False)
    with pytest.raises(ConfigError, match="may not end in _answer"):
        loom_nb.evaluate(Agent(Model.function(lambda r: "")), ["q"],
                         scorers={"x_answer": exact()}, progress=False)
    with pytest.raises(ConfigError, match="Two scorers are named"):
        loom_nb.evaluate(Agent(Model.function(lambda r: "")), ["q"], scorers=[exact(), exact()],
                         progress=False)


def test_a_scorer_that_hangs_gives_a_missing_score_and_the_study_goes_on() -> None:
    def stuck(result, task):
        time.sleep(1.5)  # sync: runs in a thread, so the loop is free
        return True

    async def stuck_async(result, task):
        await asyncio.sleep(3600)

    df = loom_nb.evaluate(Agent(Model.function(lambda r: "x")), ["a", "b"],
                          scorers=[stuck, stuck_async, {"ok": exact()}.get("ok")],
                          scorer_timeout=0.3, progress=False, concurrency=2)
    assert df.score_stuck.isna().all() and df.score_stuck_async.isna().all()
    assert "took more than 0.3 s" in df.score_stuck_async_explanation[0]
    with pytest.raises(ConfigError, match="scorer_timeout"):
        loom_nb.evaluate(Agent(Model.function(lambda r: "x")), ["a"], scorer_timeout=0,
                         progress=False)


def test_model_graded_scorer_records_its_calls_and_scores_are_reused_on_resume(tmp_path) -> None:
    store = tmp_path / "g.sqlite"
    grades = iter(["CORRECT\nmatches", "INCORRECT\nwrong city", "PARTIAL\nclose",
                   "no grade here"])
    asked: list[str] = []

    def grader(request):
        asked.append(request.messages[0].text)
        return next(grades)

    scorer = model_graded(Model.function(grader))
    tasks = [{"id": f"t{i}", "input": f"q{i}", "target": f"a{i}"} for i in range(4)]
    agent = Agent(Model.function(lambda r: "an answer"))
    df = loom_nb.evaluate(agent, tasks, store=store, scorers=[scorer], concurrency=1,
                          progress=False)
    assert df.score_model_graded.tolist() == [1.0, 0.0, 0.5, 0.0]
    assert df.score_model_graded_answer.tolist()[:3] == ["CORRECT", "INCORRECT", "PARTIAL"]
    assert "no grade" in df.score_model_graded_explanation[3]
    assert "EXPECTED ANSWER" in asked[0] and '"a0"' in asked[0]
    judged = events_df(store)
    judged = judged[judged.type == "quality.judge"]
    assert len(judged) == 4 and set(judged.data.map(lambda d: '"purpose": "score"' in d)) == {True}
    assert judged.task_id.tolist() == ["t0", "t1", "t2", "t3"]
    counts = runs_df(store).event_count.tolist()
    assert len(set(counts)) == 1 and counts[0] == len(
        events_df(store)[lambda e: e.run_id == df.run_id[0]])  # run events + the judge call

    df2 = loom_nb.evaluate(agent, tasks, store=store, scorers=[scorer], progress=False)
    assert len(asked) == 4  # resumed: the stored scores are reused, the grader is not asked
    assert df2.score_model_graded.tolist() == df.score_model_graded.tolist()

    grades = iter(["CORRECT"] * 4)
    again = loom_nb.rescore(df2, [scorer])  # scoring afresh, without the agent
    assert len(asked) == 8 and again.score_model_graded.tolist() == [1.0] * 4
    from_store = loom_nb.rescore(str(store), [exact()])
    assert from_store.score_exact.tolist() == [0.0] * 4
    assert from_store.score_model_graded.tolist() == [1.0] * 4  # the latest stored scores
    from loom_nb.evaluation import evaluation_frame

    rebuilt = evaluation_frame(store)  # as evaluate returned it, from the store alone
    assert rebuilt.run_id.tolist() == df.run_id.tolist() and rebuilt.resumed.all()
    assert rebuilt.target.tolist() == ["a0", "a1", "a2", "a3"]
    assert set(rebuilt.columns) >= set(df.columns) | {"score_exact"}


def test_quality_gate_judge_calls_leave_events() -> None:
    judge = Model.function(lambda r: "FAIL\ntoo short")
    gate = QualityGate.criteria(["be long"], model=judge)
    agent = Agent(Model.function(lambda r: "short"), runtime=Runtime(quality=gate))
    result = agent.run_sync("say something")
    types = [e.type for e in result.events]
    assert "quality.judge" in types and types.index("quality.judge") < types.index("quality.verdict")
    call = next(e for e in result.events if e.type == "quality.judge").data
    assert call["purpose"] == "gate" and call["reply"].startswith("FAIL")
    assert "be long" in call["prompt"] and call["usage"]["input_tokens"] > 0
    assert result.usage.input_tokens >= call["usage"]["input_tokens"]


# -- 4. metrics ------------------------------------------------------------------------------------

def brute_pass_at(values: list[float], k: int) -> float:
    draws = list(itertools.combinations(values, k))
    return sum(any(v >= 1 for v in d) for d in draws) / len(draws)


def study(n_tasks: int = 20, epochs: int = 4) -> pd.DataFrame:
    """A two-variant evaluation frame whose answers are fixed by (task, epoch)."""
    def model(variant: str):
        seen: dict[str, int] = {}

        def fn(request):
            goal = request.messages[0].text
            seen[goal] = seen.get(goal, 0) + 1
            i = int(goal.split()[1])
            good = (i * 7 + seen[goal] * (3 if variant == "A" else 5)) % 10 < (7 if variant == "A" else 4)
            return "yes" if good else "no"
        return Agent(Model.function(fn))
    tasks = pd.DataFrame({"id": [f"t{i:02}" for i in range(n_tasks)],
                          "input": [f"task {i}" for i in range(n_tasks)], "target": "yes",
                          "level": ["easy" if i % 2 else "hard" for i in range(n_tasks)]})
    return loom_nb.evaluate({"A": model("A"), "B": model("B")}, tasks, epochs=epochs,
                            scorers=[exact()], concurrency=1, progress=False)


def test_reducers_pass_at_k_and_at_least() -> None:
    df = study()
    reduced = metrics.reduce_epochs(df, reducer=metrics.pass_at(2))
    for (variant, task_id), part in df.groupby(["variant", "task_id"]):
        got = reduced[(reduced.variant == variant) & (reduced.task_id == task_id)].value.item()
        assert got == pytest.approx(brute_pass_at(part.score_exact.tolist(), 2))
    mean = metrics.reduce_epochs(df, reducer="mean")
    assert mean.value.tolist() == df.groupby(["variant", "task_id"]).score_exact.mean().tolist()
    least = metrics.reduce_epochs(df, reducer=metrics.at_least(3))
    counts = df.groupby(["variant", "task_id"]).score_exact.sum()
    assert least.value.tolist() == [float(c >= 3) for c in counts]
    assert metrics.reduce_epochs(df, reducer="mode").value.isin([0.0, 1.0]).all()
    with pytest.raises(ConfigError, match="needs at least 5 scored epochs"):
        metrics.reduce_epochs(df, reducer=metrics.pass_at(5))
    with pytest.raises(ConfigError, match="not known"):
        metrics.summary(df, reducer="median")


def test_summary_stderr_bootstrap_groups_and_paired_compare() -> None:
    df = study()
    table = metrics.summary(df)
    per_task = metrics.reduce_epochs(df)
    for row in table.itertuples():
        values = per_task[per_task.variant == row.variant].value
        assert row.n == 20 and row.mean == pytest.approx(values.mean())
        assert row.stderr == pytest.approx(values.std(ddof=1) / math.sqrt(20))
        assert row.ci_low < row.mean < row.ci_high and row.n_missing == 0
    assert metrics.summary(df).equals(table)  # seeded: the same interval every time
    assert not metrics.summary(df, seed=1)[["ci_low"]].equals(table[["ci_low"]])
    grouped = metrics.summary(df, by="level")
    assert list(grouped.columns[:2]) == ["variant", "metadata_level"] and len(grouped) == 4
    assert grouped.n.tolist() == [10, 10, 10, 10]
    diff = metrics.compare(df, "A", "B")
    row = diff.iloc[0]
    a, b = (per_task[per_task.variant == v].set_index("task_id").value for v in ("A", "B"))
    assert row["diff"] == pytest.approx((a - b).mean()) and row.n == 20
    assert row.stderr == pytest.approx((a - b).std(ddof=1) / math.sqrt(20))
    assert row.ci_low <= row["diff"] <= row.ci_high
    with pytest.raises(ConfigError, match="no variant 'C'"):
        metrics.compare(df, "A", "C")
    with pytest.raises(ConfigError, match="no column 'colour'"):
        metrics.summary(df, by="colour")


# -- 5. report -------------------------------------------------------------------------------------

def test_report_html_has_intervals_groups_and_failing_transcripts(tmp_path: Path) -> None:
    df = study(6, 2)
    rep = loom_nb.report(df, by="level")
    page = rep._repr_html_()
    assert "<svg" in page and "Paired differences" in page and "metadata_level" in page
    assert page.count("<details") == int((df.score_exact < 1).sum())
    assert "user:</span>" in page and "task 0" in page  # transcripts from the store
    assert "latency (ms)" in page and "tokens" in page
    rep.save(str(tmp_path / "r.html"))
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    assert rep.summary.equals(metrics.summary(df))


def test_widget_progress_leaves_the_final_count_as_static_output(monkeypatch) -> None:
    pytest.importorskip("ipywidgets")
    import IPython.display

    from loom_nb import _eval_progress

    updates = []

    class Handle:
        def update(self, obj, raw=False):
            updates.append((obj, raw))

    monkeypatch.setattr(IPython.display, "display", lambda *a, **k: Handle())
    bar = _eval_progress._WidgetProgress(2)
    bar.advance({"status": "completed"})
    bar.advance({"status": "completed"})
    bar.close()
    assert len(updates) == 1 and updates[0][1] is True
    assert "2/2 samples done" in updates[0][0]["text/plain"]
    assert "2/2 samples done" in updates[0][0]["text/html"]


# -- 6. stable ids and strict checks ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["sqlite", "memory"])
def test_event_order_and_feedback_ids_do_not_depend_on_how_they_are_read(tmp_path, kind) -> None:
    from loom_nb import SessionConfig

    store = str(tmp_path / "o.sqlite") if kind == "sqlite" else InMemoryStore()
    agent = Agent(Model.function(answers({"tool x": "done"})), tools=[echo])
    session = agent.session(SessionConfig(id="s", store=store))
    first, second = session.run_sync("tool x"), session.run_sync("plain")
    session.feedback(first.run_id, 1.0)
    session.feedback(second.run_id, 0.0, "bad")
    whole = events_df(store)
    for result in (first, second):
        alone = events_df(result)
        mine = whole[whole.run_id == result.run_id]
        assert alone.order.tolist() == mine.order.tolist() and alone.order.min() > (
            -1 if result is first else whole[whole.run_id == first.run_id].order.max())
    all_ids = feedback_df(store).event_id.tolist()
    assert feedback_df(second).event_id.tolist() == all_ids[1:]
    both = feedback_df([second, session]).event_id.tolist()  # a record reached twice counts once
    assert len(both) == 2 and set(both) == set(all_ids)


def test_strict_reports_every_inconsistency(tmp_path: Path) -> None:
    import sqlite3
    from typing import get_args

    from loom_nb._export_checks import RUN_STATUSES
    from loom_nb.errors import ExportError
    from loom_nb.result import RunStatus

    assert RUN_STATUSES == set(get_args(RunStatus)) | {"running"}
    path = tmp_path / "bad.sqlite"
    gate = QualityGate.check(lambda output: True)
    agent = Agent(Model.function(answers({"tool y": "ok"})), tools=[echo],
                  runtime=Runtime(quality=gate))
    from loom_nb import SessionConfig

    session = agent.session(SessionConfig(id="s", store=str(path)))
    result = session.run_sync("tool y")
    session.feedback(result.run_id, 1.0)
    db = sqlite3.connect(path)
    db.execute("UPDATE runs SET status = 'done', usage = json_set(usage, '$.input_tokens', -5)")
    db.execute("UPDATE events SET data = json_set(data, '$.passed', 'yes') "
               "WHERE type = 'quality.verdict'")
    db.execute("UPDATE events SET data = json_set(data, '$.call_id', 'ghost') "
               "WHERE type = 'tool.result'")
    db.execute("INSERT INTO feedback (session_id, ts, run_id, kind, data) SELECT session_id, ts, "
               "'run_nobody', kind, data FROM feedback")
    db.commit()
    db.close()
    runs, problems = runs_df(path, strict=False)
    text = [str(p) for p in problems]
    assert any("status 'done' is not a run status" in p for p in text)
    assert any("input_tokens is negative (-5)" in p for p in text)
    assert any("passed='yes'" in p for p in text)
    events, problems = events_df(path, strict=False)
    assert any("tool.result for call 'ghost' has no tool.call" in str(p) for p in problems)
    feedback, problems = feedback_df(path, strict=False)
    assert [p.problem for p in problems] == ["it is about run 'run_nobody', which is not in the store"]
    for frame in (runs_df, events_df, feedback_df):
        with pytest.raises(ExportError, match="Malformed"):
            frame(path)
