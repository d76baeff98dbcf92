"""``loom_nb.evaluate``: run agents over a table of tasks and get one scored row per sample.

A sample is (variant, task, epoch): each runs in its own session, ``{prefix}-{task_id}`` (with
``@{epoch}`` after the first epoch; the prefix is ``eval-{variant}`` or ``name=``), in one store,
with at most ``concurrency`` runs at a time on loom_nb's background loop. The sample's run
context carries its identity (``loom_eval``: evaluation, variant, task id, epoch, attempt,
target), so every frame of the store can name it (``task_id``, ``epoch``, ``variant`` columns).

Resume (the rule, by outcome rather than by status alone):

* ``answered``: the run completed, or the quality gate failed it (``error_type``
  ``QualityGateFailed``). A wrong answer is a result: it is never run again.
* ``limit`` and ``needs_approval``: the run's own outcome; kept unless ``rerun`` names them.
* ``error`` (failed with any other error class), ``cancelled``, and ``interrupted`` (its process
  died: a run left ``running`` by a dead process is settled as ``interrupted``, with its usage
  summed from its events): run again by default, each retry in a fresh session (``.2``, ``.3``
  ...) so that it does not see the failed attempt's history. Earlier attempts stay in the store,
  marked ``superseded`` in ``runs_df``, and out of the metrics.
* ``running``: another live process runs it now; it is reported as such, not started twice.

The rows join the other frames on ``run_id`` / ``session_id`` (``runs_df(store)`` etc.).

What runs a sample is the executor (:mod:`loom_nb.executors`): this process by default, or Ray
tasks writing to the shared store (``executor="ray"``). Resume, scoring, progress and the frame
stay here, on the driver, whatever runs the samples.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, TypeAlias, get_args

from . import _bridge
from ._eval_progress import make_progress
from ._eval_tasks import EvalTask, normalize_tasks
from ._recovery import settle
from .errors import ConfigError
from .events import QualityVerdictData, RunFinishedData, payload
from .executors import AgentSpec, Executor, ExecutorName, agent_spec, resolve_executor
from .export import Table, _verdict
from .scoring import SCORER_TIMEOUT, Scorer, named_scorers, score_sample, stored_scores
from .store import InMemoryStore, RunRecord, SessionStore, open_store
from .task import RunContext

if TYPE_CHECKING:
    import pandas as pd

    from .agent import Agent
    from .result import RunResult

__all__ = ["EVALUATE_COLUMNS", "Outcome", "aevaluate", "evaluate", "evaluation_frame", "outcome",
           "run_sample"]

Outcome: TypeAlias = Literal["answered", "limit", "needs_approval", "error", "cancelled",
                             "interrupted", "running"]
Rerun: TypeAlias = Literal["limit", "needs_approval", "error", "cancelled", "interrupted"]
DEFAULT_RERUN: tuple[Rerun, ...] = ("error", "cancelled", "interrupted")
#: The outcomes whose answers are scored.
SCORED: frozenset[str] = frozenset({"answered", "limit"})

EVALUATE_COLUMNS: dict[str, str] = {
    "variant": "str", "task_id": "str", "epoch": "Int64", "goal": "str", "target": "json",
    "session_id": "str", "run_id": "str", "attempt": "Int64", "resumed": "boolean",
    "status": "str", "outcome": "str", "output": "str", "error": "str", "error_type": "str",
    "quality_verdict": "str", "quality_critique": "str", "input_tokens": "Int64",
    "output_tokens": "Int64", "total_tokens": "Int64", "cost_usd": "float64",
    "latency_ms": "float64", "turns": "Int64", "tool_calls": "Int64", "started_at": "datetime",
    "finished_at": "datetime",
}
#: The in-memory stores of the latest evaluations by the key in ``frame.attrs["store"]``, so
#: that rescore() and report() find them again without the frame holding them (pandas copies
#: attrs). Only the latest few are kept alive: pass a store path to keep more.
_STORES: collections.OrderedDict[str, Any] = collections.OrderedDict()
_KEEP_STORES = 8


def outcome(status: str | None, error_type: str | None) -> Outcome:
    """What a stored run's status and error class mean for resume (see the module docstring)."""
    if status == "completed" or (status == "failed" and error_type == "QualityGateFailed"):
        return "answered"
    if status in ("limit", "needs_approval", "cancelled", "interrupted", "running"):
        return status  # type: ignore[return-value]
    return "error"


@dataclass(frozen=True)
class _Sample:
    variant: str
    prefix: str
    epoch: int
    item: EvalTask

    @property
    def base(self) -> str:
        task = self.item.task_id.replace("%", "%25").replace(".", "%2E").replace("@", "%40")
        return f"{self.prefix}-{task}" + (f"@{self.epoch}" if self.epoch > 1 else "")


# -- the public entry points ---------------------------------------------------------------------

def evaluate(agent: Agent | str | Mapping[str, Agent | str], tasks: Any, *, scorers: Any = None,
             epochs: int = 1, store: Any = None, concurrency: int = 4, progress: bool = True,
             resume: bool = True, rerun: Collection[Rerun] = DEFAULT_RERUN,
             name: str | None = None, scorer_timeout: float = SCORER_TIMEOUT,
             executor: Executor | ExecutorName | None = None) -> pd.DataFrame:
    """Run ``agent`` (or each agent of a ``{"variant": agent}`` dict) on every task, ``epochs``
    times, score each answer, and return one row per sample (see docs/evaluation.md).

    Args:
        agent: the agent to evaluate, or a dict of variants: ``{"A": agent_a, "B": agent_b}``;
            an agent may be given by reference, ``"package.module:function"`` naming a factory
            that returns it (needed by ``executor="ray"`` when the agent cannot be pickled).
        tasks: a DataFrame (or list of dict rows) with an ``input`` (or ``goal``) column and
            optional ``id``, ``target``, ``inputs``, ``criteria``, ``metadata``; every other
            column is metadata (``metadata_{column}``). Or a list of RuntimeTask / str.
        scorers: a scorer or a list (or ``{name: scorer}`` dict) of scorers, each
            ``(result, task) -> Score`` (sync or async); see :mod:`loom_nb.scoring`. Each adds
            ``score_{name}`` (and ``_answer``, ``_explanation``) columns.
        epochs: how many times each task runs per variant (column ``epoch``, from 1).
        store: an SQLite file path (needed to resume after a restart), a store object, or None
            for a new in-memory store (``frame.attrs["store"]`` says which).
        concurrency: how many samples run at once.
        progress: a progress bar in a notebook, progress lines on stderr elsewhere.
        resume: skip samples whose latest run in ``store`` is kept by the resume rule.
        rerun: with ``resume``, the outcomes run again (default errors, cancelled and
            interrupted runs; never a completed run).
        name: the session id prefix (default ``eval-{variant}``; with a dict of agents,
            ``{name}-{variant}``): use another name to evaluate again from scratch.
        scorer_timeout: seconds a scorer may take on one sample; then its score is missing.
        executor: what runs the samples: ``"local"`` (default, this process), ``"ray"`` (Ray
            tasks; a shared store), or an :class:`~loom_nb.executors.Executor` such as
            ``RayExecutor(address=...)``. Scoring, resume and progress stay on the driver.
    """
    return _bridge.run_sync(aevaluate(agent, tasks, scorers=scorers, epochs=epochs, store=store,
                                      concurrency=concurrency, progress=progress, resume=resume,
                                      rerun=rerun, name=name, scorer_timeout=scorer_timeout,
                                      executor=executor))


async def aevaluate(agent: Agent | str | Mapping[str, Agent | str], tasks: Any, *,
                    scorers: Any = None, epochs: int = 1, store: Any = None,
                    concurrency: int = 4, progress: bool = True, resume: bool = True,
                    rerun: Collection[Rerun] = DEFAULT_RERUN,
                    name: str | None = None, scorer_timeout: float = SCORER_TIMEOUT,
                    executor: Executor | ExecutorName | None = None) -> pd.DataFrame:
    """:func:`evaluate` for async code (``await``)."""
    variants = _variants(agent, name)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or concurrency < 1:
        raise ConfigError(f"evaluate(concurrency=...) must be a positive int, not {concurrency!r}.")
    if not isinstance(epochs, int) or isinstance(epochs, bool) or epochs < 1:
        raise ConfigError(f"evaluate(epochs=...) must be a positive int, not {epochs!r}.")
    if not isinstance(scorer_timeout, int | float) or not scorer_timeout > 0:
        raise ConfigError(f"evaluate(scorer_timeout=...) must be a positive number of seconds, "
                          f"not {scorer_timeout!r}.")
    again = _rerun(rerun)
    the_scorers = named_scorers(scorers)
    items = normalize_tasks(tasks)
    samples = [_Sample(v, prefix, e, item) for v, (prefix, _) in variants.items()
               for item in items for e in range(1, epochs + 1)]
    _check_unique(samples)
    the_store = InMemoryStore() if store is None else open_store(store)
    runner = resolve_executor(executor)
    runner.open({v: spec for v, (_, spec) in variants.items()}, the_store)
    try:
        rows = await _run_all(samples, runner, the_store, concurrency, progress, resume, again,
                              the_scorers, scorer_timeout)
    finally:
        runner.close()
    return frame_of(rows, the_store, list(the_scorers))


async def _run_all(samples: list[_Sample], runner: Executor, store: SessionStore,
                   concurrency: int, progress: bool, resume: bool, again: frozenset[str],
                   scorers: dict[str, Scorer], timeout: float) -> list[dict[str, Any]]:
    bar = make_progress(len(samples)) if progress else None
    limit = asyncio.Semaphore(concurrency)

    async def one(sample: _Sample) -> dict[str, Any]:
        row = await _evaluate_one(runner, sample, store, limit, resume, again, scorers, timeout)
        if bar is not None:
            bar.advance(row)
        return row

    jobs = [asyncio.ensure_future(one(s)) for s in samples]
    try:
        return list(await asyncio.gather(*jobs))
    finally:
        for job in jobs:  # an interrupt: cancel what still runs, and wait until it has recorded that
            job.cancel()
        await asyncio.gather(*jobs, return_exceptions=True)
        if bar is not None:
            bar.close()


def _variants(agent: Any, name: str | None) -> dict[str, tuple[str, AgentSpec]]:
    from .agent import Agent

    if isinstance(agent, Agent | str) or callable(agent):
        spec = agent_spec(agent, "evaluate(agent)")
        return {spec.agent.name: (name or f"eval-{spec.agent.name}", spec)}
    if isinstance(agent, Mapping) and agent:
        out = {}
        for key, value in agent.items():
            if not isinstance(key, str) or not key or not (isinstance(value, Agent | str)
                                                           or callable(value)):
                raise ConfigError(f"evaluate() takes a dict of {{'variant name': Agent or "
                                  f"'module:function'}}; {key!r} maps to "
                                  f"{type(value).__name__}.")
            out[key] = (f"{name or 'eval'}-{key}", agent_spec(value, f"variant {key!r}"))
        return out
    raise ConfigError(f"evaluate() takes an Agent or a non-empty dict of variant name -> Agent "
                      f"first, not {type(agent).__name__}.")


def _rerun(rerun: Collection[str]) -> frozenset[str]:
    allowed = set(get_args(Rerun))
    if isinstance(rerun, str):
        rerun = (rerun,)
    wrong = [r for r in rerun if r not in allowed]
    if wrong:
        hint = (" A wrong answer ('failed' by the quality gate) or a completed run is never run "
                "again: pass resume=False, or another name=, to run everything afresh."
                if any(r in ("failed", "completed", "answered") for r in wrong) else "")
        raise ConfigError(f"evaluate(rerun=...) takes outcomes from {sorted(allowed)}, not "
                          f"{wrong}.{hint}")
    return frozenset(rerun)


def _check_unique(samples: list[_Sample]) -> None:
    seen: dict[str, _Sample] = {}
    for sample in samples:
        other = seen.setdefault(sample.base, sample)
        if other is not sample:
            raise ConfigError(f"Variant {sample.variant!r} task {sample.item.task_id!r} and "
                              f"variant {other.variant!r} task {other.item.task_id!r} would share "
                              f"the session {sample.base!r}; rename a variant or a task id.")


# -- one sample ------------------------------------------------------------------------------------

async def run_sample(agent: Agent, item: EvalTask, store: SessionStore, session_id: str,
                     identity: Mapping[str, Any]) -> RunResult:
    """Run one task in its own session and close that session: the seam an executor plugs into
    (it gets the agent, the task row, where to store, and the run's identity labels)."""
    from .session import SessionConfig

    session = agent.session(SessionConfig(id=session_id, store=store,
                                          metadata={"evaluate": identity["evaluation"],
                                                    "task_id": item.task_id,
                                                    "attempt": identity["attempt"]}))
    try:
        return await session.run(item.task, RunContext(metadata={"loom_eval": dict(identity)}))
    finally:
        # Only this task's session: the agent's MCP connections serve the other tasks and stay
        # open until the caller closes the agent.
        await session.aclose()


async def _evaluate_one(runner: Executor, sample: _Sample, store: SessionStore,
                        limit: asyncio.Semaphore, resume: bool, rerun: frozenset[str],
                        scorers: dict[str, Scorer], timeout: float) -> dict[str, Any]:
    attempt, latest = _previous(store, sample.base)  # without resume: a fresh session after any
    if resume and latest is not None:
        done_attempt, record = latest
        kept = outcome(record.status, _error_type(store, record)) not in rerun
        if kept or record.status == "running":
            result = _result_from_store(store, record)
            row = _row(sample, result, done_attempt, resumed=True)
            async with limit:  # a scorer may call a model: as bounded as the runs
                return await _scored(row, result, sample, scorers, store, timeout, reuse=True)
    async with limit:
        session_id = _session_id(sample.base, attempt)
        identity = {"evaluation": sample.prefix, "variant": sample.variant,
                    "task_id": sample.item.task_id, "epoch": sample.epoch, "attempt": attempt,
                    "target": sample.item.target}
        try:
            result = await runner.run(sample.variant, sample.item, session_id, identity)
        except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
            return {**_ids(sample), "session_id": session_id, "attempt": attempt,
                    "resumed": False, "status": "failed", "outcome": "error",
                    "error": f"{type(exc).__name__}: {exc}", "error_type": type(exc).__name__}
        return await _scored(_row(sample, result, attempt, resumed=False), result, sample,
                             scorers, store, timeout, reuse=False)


async def _scored(row: dict[str, Any], result: RunResult, sample: _Sample,
                  scorers: dict[str, Scorer], store: SessionStore, timeout: float, *,
                  reuse: bool) -> dict[str, Any]:
    """The row with its scores. Only answers are scored (and a run stopped by a limit, whose
    last text is its answer): a crash is not a wrong answer, so its score is missing."""
    if not scorers or row["outcome"] not in SCORED:
        return row
    known = stored_scores(store, result) if reuse else {}
    return {**row, **await score_sample(scorers, result, sample.item, store, known,
                                        timeout=timeout)}


def _previous(store: SessionStore, base: str) -> tuple[int, tuple[int, RunRecord] | None]:
    """The attempt number to use next, and the latest (attempt, RunRecord) if any; runs a dead
    process left ``running`` are settled as ``interrupted`` on the way."""
    attempt, latest = 1, None
    while True:
        records = store.runs(_session_id(base, attempt))
        if not records:
            return attempt, latest
        records = settle(store, records)
        latest = (attempt, records[-1])
        attempt += 1


def _session_id(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}.{attempt}"


def _error_type(store: SessionStore, record: RunRecord) -> str | None:
    if record.status != "failed":
        return None  # only a failed run's class decides: the rest is read from the status
    events = store.events(run_id=record.run_id)
    finished = next((payload(e, RunFinishedData) for e in reversed(events)
                     if e.type == "run.finished"), None)
    return finished.get("error_type") if finished else None


def _ids(sample: _Sample) -> dict[str, Any]:
    metadata = {f"metadata_{k}": v for k, v in sample.item.metadata.items()}
    return {"variant": sample.variant, "task_id": sample.item.task_id, "epoch": sample.epoch,
            "goal": sample.item.task.goal, "target": sample.item.target, **metadata}


def _row(sample: _Sample, result: RunResult, attempt: int, *, resumed: bool) -> dict[str, Any]:
    verdict = next((payload(e, QualityVerdictData) for e in reversed(result.events)
                    if e.type == "quality.verdict"), None)
    usage = result.usage
    return {
        **_ids(sample), "session_id": result.session_id, "run_id": result.run_id,
        "attempt": attempt, "resumed": resumed, "status": result.status,
        "outcome": outcome(result.status, result.error_type), "output": result.text,
        "error": result.error, "error_type": result.error_type,
        "quality_verdict": _verdict(verdict),
        "quality_critique": verdict.get("critique") if verdict else None,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens, "cost_usd": getattr(usage, "cost", None),
        "latency_ms": result.duration_ms, "turns": result.turns,
        "tool_calls": len(result.tool_calls),
        "started_at": result.started_at, "finished_at": result.finished_at,
    }


def _result_from_store(store: SessionStore, record: RunRecord) -> RunResult:
    from .result import RunResult

    events = store.events(run_id=record.run_id)
    finished: Mapping[str, Any] = next((payload(e, RunFinishedData) for e in reversed(events)
                                        if e.type == "run.finished"), {})
    return RunResult(output=record.output, status=record.status,  # type: ignore[arg-type]
                     run_id=record.run_id, session_id=record.session_id, events=events,
                     usage=record.usage, error=record.error,
                     error_type=finished.get("error_type"), agent=record.agent,
                     model=record.model, turns=record.turns, started_at=record.started_at,
                     finished_at=record.finished_at)


# -- the frame -------------------------------------------------------------------------------------

def evaluation_frame(source: Any, *, evaluation: str | None = None) -> pd.DataFrame:
    """The frame :func:`evaluate` returned, rebuilt from a store (a path or a store object):
    the latest attempt of each sample, with the latest stored score of each scorer."""
    from ._rescore import evaluation_frame as rebuild

    return rebuild(source, evaluation=evaluation)


def frame_of(rows: list[dict[str, Any]], store: Any, scorer_names: list[str]) -> pd.DataFrame:
    """The evaluation frame: documented columns, then metadata and score columns as found."""
    from .scoring import score_columns

    schema = {**EVALUATE_COLUMNS, **score_columns(scorer_names)}
    if all(isinstance(r.get("target"), str | None) for r in rows):
        schema["target"] = "str"  # text targets stay text; others are JSON
    table = Table(schema)
    for row in rows:
        table.add(row, _no_problem)
    frame = table.frame()
    frame.attrs["store"] = store_key(store)
    frame.attrs["scorers"] = list(scorer_names)
    frame.attrs["target_json"] = schema["target"] == "json"
    return frame


def store_key(store: Any) -> str:
    if store is None or isinstance(store, str):
        return store or "(no store)"
    key = str(getattr(store, "path", None) or repr(store))
    if getattr(store, "path", None) is None:
        _STORES[key] = store
        _STORES.move_to_end(key)
        while len(_STORES) > _KEEP_STORES:
            _STORES.popitem(last=False)
    return key


def store_of(frame: Any) -> Any:
    """The store a frame came from, or None when it is gone (e.g. read back from Parquet)."""
    key = frame.attrs.get("store") if hasattr(frame, "attrs") else None
    if not isinstance(key, str):
        return None
    found = _STORES.get(key)
    if found is not None:
        return found
    from pathlib import Path

    return open_store(key) if Path(key).is_file() else None


def _no_problem(problem: str) -> None:
    raise ConfigError(f"evaluate could not keep a value in its frame: {problem}. Task metadata "
                      f"and scores must hold one type per column.")
