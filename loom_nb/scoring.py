"""Scores and scorers for :func:`loom_nb.evaluate`, and :func:`rescore`.

A scorer is a function ``(result, task) -> Score`` (sync or async; a bool or a number is taken
as ``Score(value)``): ``result`` is the sample's :class:`~loom_nb.RunResult`, ``task`` its
:class:`~loom_nb._eval_tasks.EvalTask` (``task.target``, ``task.metadata``, ``task.task.goal``).
Its name (``__name__``, or the key of a ``{name: scorer}`` dict) names the frame columns
``score_{name}``, ``score_{name}_answer`` and ``score_{name}_explanation``.

Each score is kept in the store as a ``score`` feedback record of its run (``feedback_df``), so
a resumed evaluation reuses the scores of the runs it does not run again; :func:`rescore`
always scores afresh, without calling the agent. A model-graded scorer's model calls are
``quality.judge`` events appended to the run it scored.

A target may be one value or a list of acceptable values: a built-in scorer passes if any
matches. A scorer that raises gives a missing score (NaN) with the error as its explanation,
and the other scorers and samples go on.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from .errors import ConfigError, StoreError
from .events import make_event
from .feedback import FeedbackRecord
from .quality import judge_call

if TYPE_CHECKING:
    from ._eval_tasks import EvalTask
    from .models import Model
    from .result import RunResult
    from .store import SessionStore

__all__ = ["Score", "Scorer", "exact", "includes", "json_match", "model_graded", "numeric",
           "regex"]


@dataclass(frozen=True)
class Score:
    """The score of one answer: ``value`` (a bool, or a number such as 0.5 for partial credit),
    the ``answer`` the scorer read out of the output, and an ``explanation``."""

    value: float | bool
    answer: str | None = None
    explanation: str | None = None

    def __post_init__(self) -> None:
        value = self.value
        if isinstance(value, bool) or (isinstance(value, int | float) and math.isfinite(value)):
            return
        raise ConfigError(f"Score(value=...) takes a bool or a finite number, not {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "answer": self.answer, "explanation": self.explanation}


Scorer: TypeAlias = Callable[..., "Score | bool | float | Awaitable[Score | bool | float]"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def named_scorers(scorers: Any) -> dict[str, Scorer]:
    """``{name: scorer}`` from a scorer, a list of scorers or a dict; names must be unique."""
    if scorers is None:
        return {}
    if isinstance(scorers, Mapping):
        pairs = [(k, v) for k, v in scorers.items()]
    else:
        many = scorers if isinstance(scorers, list | tuple) else [scorers]
        pairs = [(getattr(s, "score_name", None) or getattr(s, "__name__", None), s) for s in many]
    out: dict[str, Scorer] = {}
    for name, scorer in pairs:
        if not callable(scorer):
            raise ConfigError(f"Scorer {name!r} is not callable; a scorer is a function "
                              f"(result, task) -> Score.")
        if not isinstance(name, str) or not _NAME.match(name):
            raise ConfigError(f"A scorer needs a name made of letters, digits and _ (it names "
                              f"the column score_{{name}}); got {name!r}. Pass a dict "
                              f"{{'name': scorer}} for lambdas and partials.")
        if name.endswith(("_answer", "_explanation")):
            raise ConfigError(f"A scorer name may not end in _answer or _explanation (those name "
                              f"the columns beside score_{{name}}); rename {name!r}.")
        if name in out:
            raise ConfigError(f"Two scorers are named {name!r}; pass a dict to name them apart.")
        out[name] = scorer
    return out


def score_columns(names: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for name in names:
        out.update({f"score_{name}": "float64", f"score_{name}_answer": "str",
                    f"score_{name}_explanation": "str"})
    return out


#: Seconds a scorer may take on one sample before its score is given up as missing.
SCORER_TIMEOUT = 300.0


async def score_sample(scorers: Mapping[str, Scorer], result: RunResult, task: EvalTask,
                       store: SessionStore | None, known: Mapping[str, Score], *,
                       timeout: float = SCORER_TIMEOUT) -> dict[str, Any]:
    """The score columns of one sample: ``known`` scores as they are, the others computed (and
    kept in ``store``)."""
    row: dict[str, Any] = {}
    for name, scorer in scorers.items():
        score = known.get(name)
        if score is None:
            score = await _call(name, scorer, result, task, store, timeout)
            if store is not None and result.run_id:
                _keep(store, result, name, score)
        row.update({f"score_{name}": float(score.value) if score.value is not None else None,
                    f"score_{name}_answer": score.answer,
                    f"score_{name}_explanation": score.explanation})
    return row


class _Missing(Score):
    """A score that could not be computed: its value is missing (NaN in the frame)."""

    def __post_init__(self) -> None:
        pass


async def _call(name: str, scorer: Scorer, result: RunResult, task: EvalTask,
                store: SessionStore | None, timeout: float) -> Score:
    async def call() -> Any:
        if getattr(scorer, "wants_store", False):
            value = scorer(result, task, store=store)
        elif inspect.iscoroutinefunction(scorer) or getattr(scorer, "bounded", False):
            value = scorer(result, task)  # async, or a built-in whose time is bounded
        else:  # in a thread: a sync scorer that hangs must not stop the event loop
            value = await asyncio.to_thread(scorer, result, task)
        return await value if inspect.isawaitable(value) else value

    try:
        value = await asyncio.wait_for(call(), timeout)
    except TimeoutError:
        return _Missing(None, None, f"scorer {name!r} took more than {timeout:g} s "  # type: ignore[arg-type]
                        f"(scorer_timeout=)")
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - one scorer must not stop the study
        return _Missing(None, None, f"scorer {name!r} raised {type(exc).__name__}: {exc}")  # type: ignore[arg-type]
    if isinstance(value, Score):
        return value
    try:
        if isinstance(value, bool | int | float):
            return Score(value)
        raise ConfigError(f"it returned {type(value).__name__}")
    except ConfigError as exc:  # a bad value is the scorer's bug: this score is missing
        return _Missing(None, None, f"scorer {name!r}: {exc}; return a loom_nb.Score(value, "  # type: ignore[arg-type]
                        f"answer=..., explanation=...), a bool or a finite number")


def _keep(store: SessionStore, result: RunResult, name: str, score: Score) -> None:
    data = {"scorer": name, **score.to_dict(),
            "value": None if score.value is None else float(score.value)}
    try:
        store.append_feedback(FeedbackRecord(session_id=result.session_id, run_id=result.run_id,
                                             kind="score", data=data))
    except StoreError:
        pass  # the frame has the score; only a later resume cannot reuse it


def stored_scores(store: SessionStore, result: RunResult) -> dict[str, Score]:
    """The latest stored score of each scorer for ``result``'s run."""
    out: dict[str, Score] = {}
    for record in store.feedback(result.session_id):
        data = record.data
        if record.kind != "score" or record.run_id != result.run_id or not isinstance(data, dict):
            continue
        value = data.get("value")
        answer, why = data.get("answer"), data.get("explanation")
        if value is None:
            out[str(data.get("scorer"))] = _Missing(None, answer, why)  # type: ignore[arg-type]
        elif isinstance(value, bool | int | float):
            out[str(data.get("scorer"))] = Score(value, answer, why)
    return out


# -- built-in scorers ------------------------------------------------------------------------------

def _targets(task: EvalTask) -> list[Any]:
    target = task.target
    if target is None:
        raise ConfigError(f"Task {task.task_id!r} has no target; give the task table a "
                          f"'target' column for this scorer.")
    return list(target) if isinstance(target, list) else [target]


def _output(result: RunResult) -> str:
    output = result.output
    if output is None:
        return ""
    return output if isinstance(output, str) else json.dumps(output, default=str)


def _norm(text: str, ignore_case: bool) -> str:
    text = " ".join(text.split())
    return text.casefold() if ignore_case else text


def _named(fn: Callable[..., Any], name: str) -> Callable[..., Any]:
    fn.__name__ = name
    fn.score_name = name  # type: ignore[attr-defined]
    fn.bounded = True  # type: ignore[attr-defined]  # linear in the output: no worker thread
    return fn


def exact(*, ignore_case: bool = True) -> Scorer:
    """1 when the output equals the target (or one of them), whitespace collapsed."""
    def scorer(result: RunResult, task: EvalTask) -> Score:
        answer = _norm(_output(result), ignore_case)
        hit = any(answer == _norm(str(t), ignore_case) for t in _targets(task))
        return Score(hit, answer=_output(result), explanation=None if hit else "not equal")
    return _named(scorer, "exact")


def includes(*, ignore_case: bool = True) -> Scorer:
    """1 when the output contains the target (or one of them)."""
    def scorer(result: RunResult, task: EvalTask) -> Score:
        answer = _norm(_output(result), ignore_case)
        found = [t for t in _targets(task) if _norm(str(t), ignore_case) in answer]
        return Score(bool(found), answer=str(found[0]) if found else None)
    return _named(scorer, "includes")


def regex(pattern: str | None = None, *, ignore_case: bool = False) -> Scorer:
    """1 when ``pattern`` (default: the target, as a pattern) matches somewhere in the output.

    Patterns run on RE2 (``google-re2``, the ``files`` extra), whose time is linear in the text:
    a hostile pattern or a huge output cannot hang the evaluation."""
    compiled = _re2(pattern, ignore_case) if pattern is not None else None

    def scorer(result: RunResult, task: EvalTask) -> Score:
        patterns = [compiled] if compiled is not None else [
            _re2(str(t), ignore_case) for t in _targets(task)]
        text = _output(result)
        for p in patterns:
            match = p.search(text)
            if match is not None:
                return Score(True, answer=match.group(0))
        return Score(False, explanation="no match")
    return _named(scorer, "regex")


def _re2(pattern: str, ignore_case: bool) -> Any:
    try:
        import re2
    except ImportError:
        raise ConfigError("The regex scorer needs the google-re2 package (pip install "
                          "'loom-nb[files]').") from None
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise ConfigError(f"{pattern!r} is not a valid RE2 pattern ({exc}); RE2 has no "
                          f"backreferences or lookaround.") from None


_NUMBER = re.compile(r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?")


def numeric(*, tolerance: float = 1e-6, relative: bool = False) -> Scorer:
    """1 when the last number in the output is within ``tolerance`` of the target (absolute, or
    relative to the target with ``relative=True``)."""
    if not isinstance(tolerance, int | float) or tolerance < 0:
        raise ConfigError(f"numeric(tolerance=...) must be a number >= 0, not {tolerance!r}.")

    def scorer(result: RunResult, task: EvalTask) -> Score:
        found = _NUMBER.findall(_output(result)[-10_000:])  # the answer is at the end; bounded
        if not found:
            return Score(False, explanation="no number in the output")
        value = float(found[-1].replace(",", ""))
        for target in _targets(task):
            try:
                wanted = float(target)
            except (TypeError, ValueError):
                raise ConfigError(f"Task {task.task_id!r}: numeric() needs a number as target, "
                                  f"not {target!r}.") from None
            allowed = tolerance * abs(wanted) if relative else tolerance
            if abs(value - wanted) <= allowed:
                return Score(True, answer=found[-1])
        return Score(False, answer=found[-1], explanation=f"{value} is not within {tolerance} "
                     f"of {task.target}")
    return _named(scorer, "numeric")


def json_match(*, keys: list[str] | None = None) -> Scorer:
    """1 when the output (JSON, optionally in a ```json fence) equals the target; with ``keys``
    only those keys are compared. Partial credit: the share of matching keys."""
    def scorer(result: RunResult, task: EvalTask) -> Score:
        text = _output(result).strip()
        fenced = re.match(r"^```(?:json)?\s*\n(.*)\n```$", text, re.S)
        try:
            value = json.loads(fenced.group(1) if fenced else text)
        except ValueError as exc:
            return Score(False, explanation=f"the output is not JSON ({exc})")
        best = 0.0
        for target in _targets(task):
            best = max(best, _share(value, target, keys))
        return Score(best if best not in (0.0, 1.0) else bool(best),
                     answer=json.dumps(value, sort_keys=True, default=str)[:2000])
    return _named(scorer, "json_match")


def _share(value: Any, target: Any, keys: list[str] | None) -> float:
    if not isinstance(target, dict) or not isinstance(value, dict):
        return 1.0 if value == target else 0.0
    wanted = keys if keys is not None else list(target)
    if not wanted:
        return 1.0 if value == target else 0.0
    return sum(k in value and value[k] == target.get(k) for k in wanted) / len(wanted)


GRADER_INSTRUCTIONS = (
    "You grade an answer against the expected answer for a task. Reply with one word on the "
    "first line: CORRECT, PARTIAL or INCORRECT; then a short explanation.")
_GRADE = re.compile(r"^\s*\**\s*(CORRECT|PARTIAL|INCORRECT)\b", re.I)


def model_graded(model: Model | str, *, instructions: str = GRADER_INSTRUCTIONS,
                 name: str = "model_graded") -> Scorer:
    """A model grades the output against the target (CORRECT 1, PARTIAL 0.5, INCORRECT 0; a
    reply without a grade is 0 with the reply as explanation). Each call is recorded as a
    ``quality.judge`` event of the scored run."""
    from .models import resolve_model

    grader = resolve_model(model)

    async def scorer(result: RunResult, task: EvalTask, *, store: SessionStore | None) -> Score:
        target = task.target if task.target is not None else "(no expected answer given)"
        prompt = (f"TASK:\n{task.task.goal}\n\nEXPECTED ANSWER:\n{json.dumps(target, default=str)}"
                  f"\n\nANSWER:\n{_output(result)}")
        call = await judge_call(grader, instructions, prompt)
        if store is not None and result.run_id:
            _record_call(store, result, name, call.to_dict())
        match = _GRADE.match(call.reply)
        grade = match.group(1).upper() if match else None
        value = {"CORRECT": 1.0, "PARTIAL": 0.5}.get(grade or "", 0.0)
        why = call.reply.strip()[:2000] if match else f"no grade in the reply: {call.reply[:500]!r}"
        return Score(value, answer=grade, explanation=why)
    scorer.wants_store = True  # type: ignore[attr-defined]
    return _named(scorer, name)


def _record_call(store: SessionStore, result: RunResult, scorer: str, call: dict[str, Any]) -> None:
    """The grader's call as an event of the scored run, after its last one."""
    events = store.events(run_id=result.run_id)
    seq = max((e.seq for e in events), default=-1) + 1
    parent = events[0].parent_run_id if events else None
    store.append_events([make_event("quality.judge", result.run_id, result.session_id, seq,
                                    {"purpose": "score", "scorer": scorer, **call},
                                    parent_run_id=parent)])
