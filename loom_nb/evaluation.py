"""``loom_nb.evaluate``: run an agent over a table of tasks and get one row per task.

Each task runs in its own session (id ``{name}-{task_id}``, so a second call finds it again) in
one store, with at most ``concurrency`` runs at a time on loom_nb's background loop. A task that
fails becomes a row with ``status="failed"`` and its error; the others go on. With
``resume=True`` (the default) a task whose session already holds a finished run is not run again:
its row is read from the store. Only tasks that never finished (interrupted, cancelled, failed)
run again, each retry in a fresh session (``{name}-{task_id}.2``, ...) so that it does not see the
failed attempt's history.

The rows join the other frames on ``run_id`` / ``session_id`` (``runs_df(store)`` etc.).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
import time
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _bridge
from ._words import a_type
from .errors import ConfigError
from .events import QualityVerdictData, RunFinishedData, payload
from .export import Table, _verdict
from .store import InMemoryStore, SessionStore, open_store
from .task import RuntimeTask

if TYPE_CHECKING:
    import pandas as pd

    from .agent import Agent
    from .result import RunResult

__all__ = ["EVALUATE_COLUMNS", "aevaluate", "evaluate"]

EVALUATE_COLUMNS: dict[str, str] = {
    "task_id": "str", "goal": "str", "session_id": "str", "run_id": "str", "attempt": "Int64",
    "resumed": "boolean", "status": "str", "output": "str", "error": "str", "error_type": "str",
    "quality_verdict": "str", "quality_critique": "str", "input_tokens": "Int64",
    "output_tokens": "Int64", "total_tokens": "Int64", "latency_ms": "float64", "turns": "Int64",
    "tool_calls": "Int64", "started_at": "datetime", "finished_at": "datetime",
}
#: Statuses that count as done: such a task is not run again on resume unless asked (rerun=).
_FINISHED = ("completed", "failed", "limit", "needs_approval")


@dataclass(frozen=True)
class _Item:
    task_id: str
    task: RuntimeTask


# -- the public entry points ---------------------------------------------------------------------

def evaluate(agent: Agent, tasks: Any, *, store: Any = None, concurrency: int = 4,
             progress: bool = True, resume: bool = True, rerun: Collection[str] = ("failed",),
             name: str | None = None) -> pd.DataFrame:
    """Run ``agent`` on every task and return one row per task (see docs/dataframes.md).

    Args:
        agent: the agent to evaluate.
        tasks: a DataFrame with a ``goal`` column (optional ``id``, ``inputs``, ``criteria``,
            ``metadata``), or a list of :class:`RuntimeTask` / str.
        store: where the sessions go: an SQLite file path (needed to resume after a restart), a
            store object, or None for a new in-memory store (the frame's ``attrs["store"]`` says
            which).
        concurrency: how many tasks run at once.
        progress: a progress bar in a notebook, progress lines on stderr elsewhere.
        resume: skip tasks whose session in ``store`` already has a finished run.
        rerun: with ``resume``, statuses that are run again anyway (default: failed runs).
        name: the session id prefix (default ``eval-{agent.name}``): use another name to
            evaluate again from scratch in the same store.

    Works in a notebook cell without ``await`` (it runs on loom_nb's background loop); in async
    code use ``await loom_nb.aevaluate(...)``. An interrupt cancels the running tasks
    (recorded as cancelled) and a later call with the same store resumes.
    """
    return _bridge.run_sync(aevaluate(agent, tasks, store=store, concurrency=concurrency,
                                      progress=progress, resume=resume, rerun=rerun, name=name))


async def aevaluate(agent: Agent, tasks: Any, *, store: Any = None, concurrency: int = 4,
                    progress: bool = True, resume: bool = True, rerun: Collection[str] = ("failed",),
                    name: str | None = None) -> pd.DataFrame:
    """:func:`evaluate` for async code (``await``)."""
    from .agent import Agent

    if not isinstance(agent, Agent):
        raise ConfigError(f"evaluate() takes an Agent first, not {type(agent).__name__}.")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"evaluate(concurrency=...) must be a positive int, not {concurrency!r}.")
    items = normalize_tasks(tasks)
    the_store = InMemoryStore() if store is None else open_store(store)
    prefix = name or f"eval-{agent.name}"
    bar = make_progress(len(items)) if progress else None
    limit = asyncio.Semaphore(concurrency)

    async def one(item: _Item) -> dict[str, Any]:
        row = await _evaluate_one(agent, item, the_store, prefix, limit, resume, set(rerun))
        if bar is not None:
            bar.advance(row)
        return row

    jobs = [asyncio.ensure_future(one(item)) for item in items]
    try:
        rows = await asyncio.gather(*jobs)
    finally:
        for job in jobs:  # an interrupt: cancel what still runs, and wait until it has recorded that
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if bar is not None:
            bar.close()
    frame = _frame(rows)
    frame.attrs["store"] = str(getattr(the_store, "path", None) or repr(the_store))
    return frame


# -- tasks -----------------------------------------------------------------------------------------

def normalize_tasks(tasks: Any) -> list[_Item]:
    """Task ids and RuntimeTasks from a DataFrame or a list; ids must be unique."""
    if hasattr(tasks, "columns") and hasattr(tasks, "to_dict"):
        items = _from_frame(tasks)
    elif isinstance(tasks, Iterable) and not isinstance(tasks, str | bytes | dict):
        items = []
        for position, task in enumerate(tasks):
            if isinstance(task, str):
                task = RuntimeTask(task)
            if not isinstance(task, RuntimeTask):
                raise ConfigError(f"Task {position} is {a_type(task)}; evaluate() takes "
                                  f"RuntimeTask objects or goal strings.")
            explicit = task.metadata.get("id")
            items.append((None if explicit is None else str(explicit), task))
    else:
        raise ConfigError("evaluate(tasks=...) takes a DataFrame with a 'goal' column or a list of "
                          "RuntimeTask / str.")
    return _with_ids(items)


def _from_frame(frame: Any) -> list[tuple[str | None, RuntimeTask]]:
    if "goal" not in frame.columns:
        raise ConfigError(f"The task table needs a 'goal' column; it has {list(frame.columns)}.")
    items = []
    for position, record in enumerate(frame.to_dict("records")):
        fields = {k: _plain(_cell(record.get(k), k, position)) for k in ("inputs", "criteria", "metadata")}
        goal = record["goal"]
        if not isinstance(goal, str) or not goal.strip():
            raise ConfigError(f"Row {position} of the task table has no goal (got {goal!r}).")
        task = RuntimeTask(goal, fields["inputs"] or {}, fields["criteria"] or [],
                           fields["metadata"] or {})
        task_id = record.get("id")
        items.append((None if _missing(task_id) else str(task_id), task))
    return items


def _cell(value: Any, column: str, position: int) -> Any:
    """A cell of the inputs/criteria/metadata columns: a dict or list, or JSON text of one."""
    if _missing(value):
        return None
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError:
            raise ConfigError(f"Row {position}, column {column!r}: {value[:60]!r} is neither a "
                              f"{'list' if column == 'criteria' else 'dict'} nor JSON text of one.") from None
    expected = list if column == "criteria" else dict
    if not isinstance(value, expected):
        raise ConfigError(f"Row {position}, column {column!r} must be a {expected.__name__}, "
                          f"got {type(value).__name__}.")
    return value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _plain(value: Any) -> Any:
    """numpy scalars in table cells become Python values, so metadata stays JSON-ready."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value.item() if hasattr(value, "item") and hasattr(value, "dtype") else value


def _with_ids(items: list[tuple[str | None, RuntimeTask]]) -> list[_Item]:
    """Explicit ids as given; otherwise a hash of the task's content, stable across calls, with
    ``-2``, ``-3`` ... for repeated identical tasks."""
    out, seen = [], set()
    for explicit, task in items:
        if explicit is not None:
            if explicit in seen:
                raise ConfigError(f"The task id {explicit!r} appears twice; task ids must be unique.")
            task_id = explicit
        else:
            digest = hashlib.sha1(json.dumps(task.to_dict(), sort_keys=True, default=str)
                                  .encode()).hexdigest()[:12]
            task_id, n = digest, 1
            while task_id in seen:
                n += 1
                task_id = f"{digest}-{n}"
        seen.add(task_id)
        out.append(_Item(task_id, task))
    return out


# -- one task --------------------------------------------------------------------------------------

async def _evaluate_one(agent: Agent, item: _Item, store: SessionStore, prefix: str,
                        limit: asyncio.Semaphore, resume: bool, rerun: set[str]) -> dict[str, Any]:
    from .session import SessionConfig

    base = f"{prefix}-{item.task_id}"
    attempt, done = _previous(store, base)  # without resume: a fresh session after any earlier
    if resume and done is not None and done[1].status not in rerun:
        return _row_from_store(store, item, *done)
    session_id = _session_id(base, attempt)
    async with limit:
        try:
            session = agent.session(SessionConfig(
                id=session_id, store=store,
                metadata={"evaluate": prefix, "task_id": item.task_id, "attempt": attempt}))
            try:
                result = await session.run(item.task)
            finally:
                # Only this task's session: the agent's MCP connections serve the other tasks
                # and stay open until the caller closes the agent.
                await session.aclose()
        except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
            return {"task_id": item.task_id, "goal": item.task.goal, "session_id": session_id,
                    "attempt": attempt, "resumed": False, "status": "failed",
                    "error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__}
    return _row(item, result, attempt, resumed=False)


def _previous(store: SessionStore, base: str) -> tuple[int, tuple[int, Any] | None]:
    """The attempt number to use next, and the latest finished (attempt, RunRecord) if any."""
    attempt, latest = 1, None
    while True:
        records = store.runs(_session_id(base, attempt))
        if not records:
            return attempt, latest
        finished = [r for r in records if r.status in _FINISHED]
        latest = (attempt, finished[-1]) if finished else latest
        attempt += 1


def _session_id(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}.{attempt}"


def _row(item: _Item, result: RunResult, attempt: int, *, resumed: bool) -> dict[str, Any]:
    verdict = next((payload(e, QualityVerdictData) for e in reversed(result.events)
                    if e.type == "quality.verdict"), None)
    usage = result.usage
    return {
        "task_id": item.task_id, "goal": item.task.goal, "session_id": result.session_id,
        "run_id": result.run_id, "attempt": attempt, "resumed": resumed, "status": result.status,
        "output": result.text, "error": result.error, "error_type": result.error_type,
        "quality_verdict": _verdict(verdict),
        "quality_critique": verdict.get("critique") if verdict else None,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens, "latency_ms": result.duration_ms, "turns": result.turns,
        "tool_calls": len(result.tool_calls),
        "started_at": result.started_at, "finished_at": result.finished_at,
    }


def _row_from_store(store: SessionStore, item: _Item, attempt: int, record: Any) -> dict[str, Any]:
    from .result import RunResult

    events = store.events(run_id=record.run_id)
    finished: Mapping[str, Any] = next((payload(e, RunFinishedData) for e in reversed(events)
                                        if e.type == "run.finished"), {})
    result = RunResult(output=record.output, status=record.status, run_id=record.run_id,
                       session_id=record.session_id, events=events, usage=record.usage,
                       error=record.error, error_type=finished.get("error_type"),
                       agent=record.agent, model=record.model, turns=record.turns,
                       started_at=record.started_at, finished_at=record.finished_at)
    return _row(item, result, attempt, resumed=True)


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    table = Table(EVALUATE_COLUMNS)
    for row in rows:
        table.add(row, _no_problem)
    return table.frame()


def _no_problem(problem: str) -> None:
    raise AssertionError(f"evaluate built a row with {problem}")  # our own rows are well-typed


# -- progress --------------------------------------------------------------------------------------

class _TextProgress:
    """Progress lines on stderr, at most one every ``every`` seconds, and a last one at the end."""

    def __init__(self, total: int, every: float = 2.0) -> None:
        self.total, self.every = total, every
        self.done = self.failed = self.resumed = 0
        self.started = self.last = time.monotonic()

    def advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.failed += row.get("status") != "completed"
        self.resumed += bool(row.get("resumed"))
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print()

    def _print(self) -> None:
        print(f"evaluate: {self.done}/{self.total} tasks done ({self.resumed} from the store, "
              f"{self.failed} not completed), {time.monotonic() - self.started:.1f} s",
              file=sys.stderr, flush=True)

    def close(self) -> None:
        self._print()


class _WidgetProgress(_TextProgress):
    """An ipywidgets progress bar with a one-line summary, updated as tasks finish."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="evaluate")
        self.label = widgets.HTML(value=f"0/{total}")
        display(widgets.HBox([self.bar, self.label]))

    def _print(self) -> None:
        self.bar.value = self.done
        self.label.value = (f"{self.done}/{self.total} · {self.resumed} from the store · "
                            f"{self.failed} not completed · {time.monotonic() - self.started:.1f} s")
        if self.done == self.total:
            self.bar.bar_style = "success" if not self.failed else "warning"


def in_notebook() -> bool:
    """True in a Jupyter kernel with a frontend; IPython is only looked at if already imported."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(total: int) -> _TextProgress:
    if in_notebook():
        try:
            bar = _WidgetProgress(total)
            bar.every = 0.2  # a widget redraw is cheap; keep it lively
            return bar
        except ImportError:
            pass  # no ipywidgets: plain lines, which a notebook shows too
    return _TextProgress(total)
