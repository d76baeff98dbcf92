"""Scoring again without calling the agent: :func:`rescore`, and the evaluation frame of a
store (:func:`evaluation_frame`), which is how ``rescore(store, ...)`` and ``report(store)``
see an evaluation that ran in another process."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from . import _bridge
from ._eval_tasks import EvalTask
from .errors import ConfigError
from .evaluation import SCORED, EVALUATE_COLUMNS, frame_of, outcome, store_of
from .scoring import SCORER_TIMEOUT, named_scorers, score_sample
from .store import open_store
from .task import RuntimeTask

if TYPE_CHECKING:
    import pandas as pd

    from .result import RunResult
    from .store import SessionStore

__all__ = ["arescore", "evaluation_frame", "rescore"]


def evaluation_frame(source: Any, *, evaluation: str | None = None) -> pd.DataFrame:
    """The frame :func:`loom_nb.evaluate` returned, rebuilt from a store (path or object): the
    latest attempt of each sample (superseded attempts are left out), with the scores kept in
    the store (the latest of each scorer)."""
    from .export import feedback_df, runs_df

    runs = runs_df(source)
    runs = runs[runs["task_id"].notna() & ~runs["superseded"].fillna(False).astype(bool)]
    if evaluation is not None:
        runs = runs[runs["evaluation"] == evaluation]
    runs = runs[runs["parent_run_id"].isna()]
    found = sorted(set(runs["evaluation"].dropna()))
    if runs.duplicated(["variant", "task_id", "epoch"]).any():
        raise ConfigError(f"The store holds several evaluations of the same variant ({found}); "
                          f"pick one with evaluation=.")
    scores = _stored_scores(feedback_df(source))
    rows, names = [], []
    for run in runs.to_dict("records"):
        row = _row_of_run(run)
        for name, score in scores.get(run["run_id"], {}).items():
            names.append(name) if name not in names else None
            row.update({f"score_{name}": score.get("value"),
                        f"score_{name}_answer": score.get("answer"),
                        f"score_{name}_explanation": score.get("explanation")})
        rows.append(row)
    store = source if not isinstance(source, str) and hasattr(source, "runs") else (
        open_store(source))
    return frame_of(rows, store, names)


def _clean(value: Any) -> Any:
    return None if value is None or (isinstance(value, float) and value != value) or (
        type(value).__name__ in ("NAType", "NaTType")) else value


def _row_of_run(run: dict[str, Any]) -> dict[str, Any]:
    run = {k: _clean(v) for k, v in run.items()}
    target = run.get("target")
    return {
        **{k: run.get(k) for k in ("variant", "task_id", "epoch", "session_id", "run_id",
                                   "attempt", "status", "output", "error", "error_type",
                                   "quality_verdict", "quality_critique", "input_tokens",
                                   "output_tokens", "total_tokens", "turns", "tool_calls",
                                   "started_at", "finished_at")},
        **{k: v for k, v in run.items() if k.startswith("metadata_")},
        "goal": run.get("prompt"), "target": json.loads(target) if target is not None else None,
        "resumed": True, "outcome": outcome(run.get("status"), run.get("error_type")),
        "latency_ms": run.get("duration_ms"),
    }


def _stored_scores(feedback: pd.DataFrame) -> dict[str, dict[str, dict[str, Any]]]:
    out: dict[str, dict[str, dict[str, Any]]] = {}
    if "feedback_scorer" not in feedback.columns:
        return out
    scores = feedback[feedback["feedback_kind"] == "score"]
    for record in scores.to_dict("records"):  # in stored order: the latest wins
        value = _clean(record.get("feedback_value"))
        out.setdefault(record["run_id"], {})[str(record["feedback_scorer"])] = {
            "value": float(json.loads(value)) if isinstance(value, str) else value,
            "answer": _clean(record.get("feedback_answer")),
            "explanation": _clean(record.get("feedback_explanation"))}
    return out


def rescore(source: Any, scorers: Any, *, store: Any = None, concurrency: int = 4,
            scorer_timeout: float = SCORER_TIMEOUT) -> pd.DataFrame:
    """Score an evaluation again with ``scorers``, without calling the agent: ``source`` is a
    frame from :func:`loom_nb.evaluate` (or read back from Parquet) or a store. Returns the
    frame with those scorers' columns replaced; the new scores are kept in the store when it is
    known (``store=``, or the frame's own)."""
    return _bridge.run_sync(arescore(source, scorers, store=store, concurrency=concurrency,
                                     scorer_timeout=scorer_timeout))


async def arescore(source: Any, scorers: Any, *, store: Any = None, concurrency: int = 4,
                   scorer_timeout: float = SCORER_TIMEOUT) -> pd.DataFrame:
    """:func:`rescore` for async code."""
    the_scorers = named_scorers(scorers)
    if not the_scorers:
        raise ConfigError("rescore() needs at least one scorer.")
    if not isinstance(concurrency, int) or concurrency < 1:
        raise ConfigError(f"rescore(concurrency=...) must be a positive int, not {concurrency!r}.")
    frame = source if hasattr(source, "columns") else evaluation_frame(source)
    missing = {"task_id", "goal", "output", "status"} - set(frame.columns)
    if missing:
        raise ConfigError(f"rescore() takes a frame from evaluate() (or a store); this frame "
                          f"lacks {sorted(missing)}.")
    the_store = open_store(store) if store is not None else store_of(frame)
    if the_store is None and not hasattr(source, "columns"):
        the_store = open_store(source)
    limit = asyncio.Semaphore(concurrency)
    records = [{k: _clean(v) for k, v in r.items()} for r in frame.to_dict("records")]

    async def one(row: dict[str, Any]) -> dict[str, Any]:
        if row.get("outcome", outcome(row.get("status"), row.get("error_type"))) not in SCORED:
            return {}
        async with limit:
            return await score_sample(the_scorers, _result(row, the_store), _task(row, frame),
                                      the_store, {}, timeout=scorer_timeout)

    scored = await asyncio.gather(*[one(r) for r in records])
    kept = [c for c in frame.columns if not any(
        c in (f"score_{n}", f"score_{n}_answer", f"score_{n}_explanation") for n in the_scorers)]
    rows = [{**{k: v for k, v in r.items() if k in kept}, **s} for r, s in zip(records, scored,
                                                                              strict=True)]
    names = [n for n in frame.attrs.get("scorers", []) if n not in the_scorers] + list(the_scorers)
    return frame_of(rows, the_store if the_store is not None else "(no store)", names)


def _task(row: dict[str, Any], frame: Any) -> EvalTask:
    metadata = {k[len("metadata_"):]: v for k, v in row.items() if k.startswith("metadata_")}
    target = row.get("target")
    if isinstance(target, str) and str(frame["target"].dtype) != "str" and frame.attrs.get(
            "target_json"):
        target = json.loads(target)
    return EvalTask(str(row["task_id"]), RuntimeTask(str(row.get("goal") or ""), metadata=metadata),
                    target, metadata)


def _result(row: dict[str, Any], store: SessionStore | None) -> RunResult:
    from .evaluation import _result_from_store
    from .messages import Usage
    from .result import RunResult

    run_id = row.get("run_id")
    record = store.get_run(run_id) if store is not None and run_id else None
    if record is not None:
        return _result_from_store(store, record)  # type: ignore[arg-type]
    usage = Usage(input_tokens=int(row.get("input_tokens") or 0),
                  output_tokens=int(row.get("output_tokens") or 0))
    return RunResult(output=row.get("output") or "", status=row.get("status") or "completed",
                     run_id=run_id or "", session_id=row.get("session_id") or "", events=[],
                     usage=usage, error=row.get("error"), error_type=row.get("error_type"),
                     turns=int(row.get("turns") or 0), started_at=row.get("started_at"),
                     finished_at=row.get("finished_at"))
