"""pandas DataFrames of runs, events, messages, tool calls, signals and feedback.

Every function takes a :class:`~loom_nb.RunResult`, a :class:`~loom_nb.Session`, the path of an
SQLite session store, a store object, or an iterable of these (their rows are concatenated;
a record reached twice, e.g. through a session and one of its results, appears once). A store
path is read straight from SQLite with SQL, read-only, so a notebook can analyse a store that
another process is writing.

All frames share one column convention (docs/dataframes.md lists every column and dtype): ids
``session_id``, ``run_id``, ``event_id`` (``"{run_id}:{seq}"``), ``parent_run_id``; ``order``,
the 0-based position within the session; timestamps as ``datetime64[us, UTC]``; durations as
float milliseconds (``*_ms``); token counts as nullable ``Int64``; nested data under typed
prefixes (``run_``, ``task_``, ``model_``, ``context_``, ``tool_``, ``policy_``, ``signal_``,
``quality_``, ``feedback_``, ``metadata_``); text as pandas' ``str`` dtype.

``strict=True`` (the default) raises :class:`ExportError` at the first malformed record;
``strict=False`` returns ``(frame, errors)``: the frame keeps what could be read and ``errors``
lists each problem as a :class:`RecordError`.

pandas is imported inside the functions, so ``import loom_nb.export`` stays light.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import _export_read as _read
from ._export_eval import IDENTITY_COLUMNS, RUN_EVAL_COLUMNS, identities, mark_superseded, of_started
from ._export_checks import CallTracker, check_run
from ._export_eval import Identities
from ._export_read import EventRow, ExportError, Problems, RecordError
from ._parquet import read_parquet, to_parquet
from .events import (QualityVerdictData, RunFinishedData, RunStartedData, ToolCallTrace,
                     ToolResultData, payload, tool_calls)

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ExportError", "RecordError", "events_df", "feedback_df", "messages_df", "read_parquet",
           "runs_df", "signals_df", "to_parquet", "tool_calls_df"]

Source = Any  # RunResult | Session | str | os.PathLike | SessionStore | Iterable of these
Result = Any  # pd.DataFrame, or (pd.DataFrame, list[RecordError]) with strict=False

# -- column schemas --------------------------------------------------------------------------------
# Kinds: "str" (text), "json" (any JSON value, stored as its JSON text), "Int64", "float64",
# "boolean", "datetime" (UTC), "int64" (never missing).

_IDS = {"session_id": "str", "run_id": "str", "event_id": "str", "parent_run_id": "str",
        "order": "int64"}
_INT_COLUMNS = ("run_turns run_input_tokens run_output_tokens run_cache_read_tokens "
                "run_cache_write_tokens run_requests run_max_turns run_max_tokens run_max_requests "
                "run_max_tool_calls model_turn "
                "model_input_tokens model_output_tokens model_cache_read_tokens "
                "model_cache_write_tokens model_requests model_attempt context_system_tokens "
                "context_skill_tokens context_memory_tokens context_working_tokens "
                "context_history_tokens context_total_tokens context_budget context_window "
                "context_output_reserve context_messages context_before_tokens "
                "context_after_tokens tool_truncated_from").split()
EVENT_COLUMNS: dict[str, str] = {
    **_IDS, **IDENTITY_COLUMNS, "seq": "int64", "type": "str", "ts": "datetime", "data": "str",  # JSON text
    "run_prompt": "str", "run_agent": "str", "run_status": "str", "run_output": "str",
    "run_error": "str", "run_error_type": "str", "run_limit": "str", "run_traceback": "str",
    "run_max_seconds": "float64", "run_tool_seconds": "float64", "run_max_cost_usd": "float64",
    "cost_usd": "float64", "run_cost_usd": "float64", "run_context": "json", "run_pending": "json",
    "run_approved": "json", "run_rejected": "json", "run_reason": "str", "run_by": "str",
    "run_signal": "json", "run_observed_signals": "json", "run_partial_text": "boolean",
    "task_goal": "str", "task_inputs": "json", "task_criteria": "json", "task_metadata": "json",
    "model_name": "str", "model_tools": "json", "model_text": "str", "model_stop_reason": "str",
    "model_tool_calls": "json", "model_delay": "float64", "model_error": "str",
    "context_window_source": "str", "context_used": "float64",
    "tool_call_id": "str", "tool_name": "str", "tool_args": "json", "tool_content": "str",
    "tool_is_error": "boolean", "tool_error_type": "str", "tool_duration_ms": "float64",
    "tool_traceback": "str", "policy_action": "str", "policy_reason": "str", "policy_check": "str",
    "signal_action": "str", "signal_reason": "str", "signal_source": "str", "signal_type": "str",
    "signal_urgency": "str", "signal_summary": "str", "signal_dedupe_key": "str",
    "signal_payload": "json", "quality_passed": "boolean", "quality_critique": "str",
    "quality_gate": "str", "feedback_score": "float64", "feedback_comment": "str",
    **{name: "Int64" for name in _INT_COLUMNS},
}
RUN_COLUMNS: dict[str, str] = {
    **{k: v for k, v in _IDS.items() if k != "event_id"}, **RUN_EVAL_COLUMNS, "agent": "str", "model": "str",
    "status": "str", "prompt": "str", "output": "str", "error": "str", "error_type": "str",
    "limit": "str", "started_at": "datetime", "finished_at": "datetime", "duration_ms": "float64",
    "turns": "Int64", "input_tokens": "Int64", "output_tokens": "Int64",
    "cache_read_tokens": "Int64", "cache_write_tokens": "Int64", "total_tokens": "Int64",
    "model_requests": "Int64", "cost_usd": "float64", "tool_calls": "Int64",
    "tool_errors": "Int64", "event_count": "Int64", "quality_verdict": "str", "quality_critique": "str",
    "task_inputs": "json", "task_criteria": "json", "turn_models": "json",
}
MESSAGE_COLUMNS: dict[str, str] = {
    "session_id": "str", "run_id": "str", "parent_run_id": "str", "message_id": "str",
    "order": "int64", **IDENTITY_COLUMNS, "part": "int64", "role": "str", "kind": "str",
    "text": "str",
    "tool_name": "str", "tool_call_id": "str", "tool_args": "json", "tool_is_error": "boolean",
    "output": "json",
    "media_type": "str", "media_ref": "str", "media_size": "Int64",
}
TOOL_CALL_COLUMNS: dict[str, str] = {
    **_IDS, **IDENTITY_COLUMNS, "ts": "datetime", "result_ts": "datetime", "model_turn": "Int64",
    "tool_call_id": "str", "tool_name": "str", "tool_args": "json", "tool_content": "str",
    "tool_is_error": "boolean", "tool_error_type": "str", "tool_duration_ms": "float64",
    "tool_truncated_from": "Int64", "policy_action": "str", "policy_reason": "str",
    "policy_check": "str", "policy_decisions": "Int64",
}
SIGNAL_COLUMNS: dict[str, str] = {
    **_IDS, "ts": "datetime", "signal_seq": "Int64", "signal_id": "str",
    **{k: v for k, v in EVENT_COLUMNS.items() if k.startswith("signal_")},
    "signal_observed_at": "datetime",
}
FEEDBACK_COLUMNS: dict[str, str] = {
    **_IDS, **IDENTITY_COLUMNS, "ts": "datetime", "feedback_kind": "str", "feedback_score": "float64",
    "feedback_comment": "str",
}
FEEDBACK_EVENT = "feedback.recorded"

# -- flattening event data -------------------------------------------------------------------------

_FAMILY = {"governance": "policy"}  # the event family -> its column prefix, where they differ
#: Keys whose dict value is flattened one level: (type, key) -> prefix of the inner keys.
_NESTED = {("model.request", "context"): "context", ("model.response", "usage"): "model",
           ("run.finished", "usage"): "run", ("run.started", "limits"): "run",
           ("run.started", "task"): "task", ("signal.decision", "signal"): "signal"}
#: Keys with their own column name (None: left out; the full data is in the ``data`` column).
_RENAMES: dict[str, dict[str, str | None]] = {
    "governance.decision": {"call_id": "tool_call_id", "name": "tool_name"},
    "model.request": {"model": "model_name", "content": None},
    "model.response": {"model": "model_name"},
    "run.started": {"model": "model_name"},
}
#: Keys the kernel always writes: a record without them is reported as malformed.
REQUIRED: dict[str, tuple[str, ...]] = {
    "run.started": ("prompt",), "run.finished": ("status",), "model.request": ("turn",),
    "model.response": ("turn", "usage"), "tool.call": ("call_id", "name", "args"),
    "tool.result": ("call_id", "name", "content", "is_error"),
    "governance.decision": ("call_id", "action"), "signal.decision": ("action",),
    "quality.verdict": ("passed",),
}


def _prefix(event_type: str) -> str:
    family = event_type.split(".", 1)[0]
    return _FAMILY.get(family, family)


def flatten(event_type: str, data: dict[str, Any]) -> dict[str, Any]:
    """The typed, prefixed columns of one event's ``data`` (values not yet type-checked)."""
    out: dict[str, Any] = {}
    prefix, renames = _prefix(event_type), _RENAMES.get(event_type, {})
    for key, value in data.items():
        if key in renames:
            if renames[key] is not None:
                out[renames[key]] = value  # type: ignore[index]
            continue
        inner = _NESTED.get((event_type, key))
        if inner is not None and isinstance(value, dict):
            for sub, item in value.items():
                if sub == "partitions" and isinstance(item, dict):
                    out.update({f"context_{p}_tokens": n for p, n in item.items()})
                elif sub == "cost":  # USD: a model response's own, or a run's total
                    out["cost_usd" if inner == "model" else f"{inner}_cost_usd"] = item
                elif not (inner == "task" and sub == "goal" and "prompt" in data):
                    out[f"{inner}_{sub}"] = item
            continue
        # call_id / tool_call_id: one name whatever the family
        out["tool_call_id" if key == "call_id" else f"{prefix}_{key}"] = value
    return out


# -- typing values ---------------------------------------------------------------------------------

#: The type a column kind stores unchanged. (datetime columns hold whatever the reader parsed.)
_EXACT: dict[str, type] = {"str": str, "Int64": int, "int64": int, "float64": float,
                           "boolean": bool}


def _check(value: Any, kind: str) -> tuple[Any, bool]:
    """``value`` in the form its column kind stores, and whether it had a valid type."""
    if value is None or kind == "datetime":
        return value, True
    if kind in ("str", "json"):
        if kind == "str" and isinstance(value, str):
            return value, True
        if kind == "str":
            return None, False
        return json.dumps(value, ensure_ascii=False, default=str), True
    if kind in ("Int64", "int64"):
        ok = isinstance(value, int) and not isinstance(value, bool)
        return (value if ok else None), ok
    if kind == "float64":
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return (float(value) if ok else None), ok
    if kind == "boolean":
        return (value if isinstance(value, bool) else None), isinstance(value, bool)
    raise AssertionError(kind)


def _infer(values: Iterable[Any]) -> str:
    """The kind of an undocumented column: the narrowest that holds all its values."""
    present = [v for v in values if v is not None]
    if present and all(isinstance(v, bool) for v in present):
        return "boolean"
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "Int64"
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return "float64"
    return "str" if all(isinstance(v, str) for v in present) else "json"


class Table:
    """Rows collected column by column (sparse, so absent fields cost nothing), then one frame."""

    def __init__(self, schema: dict[str, str]) -> None:
        self.schema = schema
        self.columns: dict[str, dict[int, Any]] = {name: {} for name in schema}
        self.rows = 0

    def add(self, values: dict[str, Any], problem: Callable[[str], None]) -> None:
        row = self.rows
        self.rows += 1
        schema, columns = self.schema, self.columns
        for name, value in values.items():
            if value is None:
                continue
            kind = schema.get(name)
            # A value of exactly its column's type is stored as it is, without the call to
            # _check: most are, and a frame of 100k events checks millions of values.
            if kind is not None and type(value) is not _EXACT.get(kind):
                value, ok = _check(value, kind)
                if not ok:
                    problem(f"{name} should be {_KIND_WORDS[kind]}, got {values[name]!r}")
                    continue
            column = columns.get(name)
            if column is None:
                column = columns[name] = {}
            column[row] = value

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        extras = sorted(set(self.columns) - set(self.schema))
        data = {}
        for name in [*self.schema, *extras]:
            cells = self.columns[name]
            kind = self.schema.get(name) or _infer(cells.values())
            values: list[Any] = [None] * self.rows
            # Documented columns were checked as they were added; undocumented JSON is dumped here.
            dump = kind == "json" and name not in self.schema
            for i, value in cells.items():
                values[i] = _check(value, "json")[0] if dump else value
            data[name] = _array(values, kind)
        return pd.DataFrame(data, index=pd.RangeIndex(self.rows))


_KIND_WORDS = {"str": "a string", "json": "JSON", "Int64": "an integer", "int64": "an integer",
               "float64": "a number", "boolean": "true or false"}


def _array(values: list[Any], kind: str) -> Any:
    import numpy as np
    import pandas as pd

    if kind == "datetime":
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True)).as_unit("us").array
    if kind == "float64":
        return np.array([np.nan if v is None else v for v in values], dtype="float64")
    if kind == "int64":
        return np.array(values, dtype="int64")
    return pd.array(values, dtype="str" if kind == "json" else kind)


# -- public frames ---------------------------------------------------------------------------------

def events_df(source: Source, *, strict: bool = True) -> Result:
    """One row per stored event: ids, ``type``, ``seq``, ``ts``, the full ``data`` as JSON, and
    its fields as typed, prefixed columns (see docs/dataframes.md)."""
    problems = Problems(strict)
    table = Table(EVENT_COLUMNS)
    orders: dict[str, int] = {}
    samples = Identities()  # a run's run.started comes before its other events
    calls = CallTracker()
    for event in _read.events(source, problems):
        row = event_row(event, orders, problems)
        if event.type == "run.started":
            samples.add(event)
        calls.see(event, problems.reporter("events", event.label))
        table.add({**row, **samples.of(event.run_id, event.session_id),
                   **flatten(event.type, event.data)},
                  problems.reporter("events", event.label))
    return problems.result(table.frame())


def event_row(event: EventRow, orders: dict[str, int], problems: Problems) -> dict[str, Any]:
    """The id columns of an event, with ``order`` counted per session, after checking its keys."""
    order = orders.get(event.session_id, 0) if event.position is None else event.position
    orders[event.session_id] = order + 1
    _check_required(event, problems)
    return {"session_id": event.session_id, "run_id": event.run_id, "event_id": event.event_id,
            "parent_run_id": event.parent_run_id, "order": order, "seq": event.seq,
            "type": event.type, "ts": event.ts, "data": event.data_json}


def runs_df(source: Source, *, strict: bool = True) -> Result:
    """One row per run: status, prompt, output, times, usage, tool call counts, quality verdict,
    and ``metadata_*`` from the task's and the RunContext's metadata."""
    problems = Problems(strict)
    wanted = {"run.started", "run.finished", "tool.call", "tool.result", "quality.verdict",
              "model.response"}
    summaries: dict[str, _RunSummary] = {}
    runs = list(_read.runs(source, problems))  # before the events: one read at a time per file
    for event in _read.events(source, problems, types=wanted):
        summaries.setdefault(event.run_id, _RunSummary()).add(event)
        _check_required(event, problems)
    counts = _read.event_counts(source)
    table = Table(RUN_COLUMNS)
    orders: dict[str, int] = {}
    rows = []
    for run in runs:
        order = orders.get(run.session_id, 0)
        orders[run.session_id] = order + 1
        summary = summaries.get(run.run_id) or _RunSummary()
        check_run(run.status, run.usage, summary.quality, problems.reporter("runs", run.run_id))
        rows.append(_run_values(run, order, summary, counts.get(run.run_id)))
    mark_superseded(rows)
    for run, row in zip(runs, rows, strict=True):
        table.add(row, problems.reporter("runs", run.run_id))
    return problems.result(table.frame())


@dataclass
class _RunSummary:
    """What runs_df takes from a run's events."""

    started: RunStartedData | None = None
    finished: RunFinishedData | None = None
    quality: QualityVerdictData | None = None  #: the last verdict of the run is its verdict
    tool_calls: int = 0
    tool_errors: int = 0
    #: The model that answered each turn (a fallback's chosen model, else the reported name).
    turn_models: list[str] = field(default_factory=list)

    def add(self, event: EventRow) -> None:
        if event.type == "model.response":
            self.turn_models.append(str(event.data.get("answered_by") or event.data.get("model", "")))
        elif event.type == "run.started":
            self.started = payload(event, RunStartedData)
        elif event.type == "run.finished":
            self.finished = payload(event, RunFinishedData)
        elif event.type == "tool.call":
            self.tool_calls += 1
        elif event.type == "tool.result":
            self.tool_errors += payload(event, ToolResultData).get("is_error") is True
        elif event.type == "quality.verdict":
            self.quality = payload(event, QualityVerdictData)


def _check_required(event: EventRow, problems: Problems) -> None:
    """Report an event whose data lacks a key the kernel always writes."""
    missing = [k for k in REQUIRED.get(event.type, ()) if k not in event.data]
    if missing and event.data_ok:
        problems.report("events", event.label, f"data lacks the key(s) {', '.join(missing)}")


def _run_values(run: _read.RunRow, order: int, summary: _RunSummary,
                count: int | None) -> dict[str, Any]:
    started: Mapping[str, Any] = summary.started or {}
    finished: Mapping[str, Any] = summary.finished or {}
    usage = run.usage
    duration = ((run.finished_at - run.started_at).total_seconds() * 1000
                if run.finished_at and run.started_at else None)
    quality = summary.quality
    raw_task = started.get("task")
    task: Mapping[str, Any] = raw_task if isinstance(raw_task, dict) else {}
    metadata = _metadata(task.get("metadata"), (started.get("context") or {}).get("metadata"))
    metadata.pop("metadata_loom_eval", None)  # its own columns
    sample = of_started(started) or {}
    tokens = {k: usage.get(k) for k in ("input_tokens", "output_tokens", "cache_read_tokens",
                                        "cache_write_tokens")}
    given, made = tokens["input_tokens"], tokens["output_tokens"]
    total = given + made if isinstance(given, int) and isinstance(made, int) else None
    return {
        "session_id": run.session_id, "run_id": run.run_id, "parent_run_id": run.parent_run_id,
        "order": order, **{k: sample.get(k) for k in RUN_EVAL_COLUMNS if k != "superseded"},
        "agent": run.agent, "model": run.model, "status": run.status,
        "prompt": run.prompt if run.prompt is not None else started.get("prompt"),
        "output": run.output, "error": run.error, "error_type": finished.get("error_type"),
        "limit": finished.get("limit"), "started_at": run.started_at,
        "finished_at": run.finished_at, "duration_ms": duration, "turns": run.turns, **tokens,
        "total_tokens": total, "model_requests": usage.get("requests"), "cost_usd": usage.get("cost"),
        "tool_calls": summary.tool_calls, "tool_errors": summary.tool_errors,
        "event_count": count, "quality_verdict": _verdict(quality),
        "quality_critique": quality.get("critique") if quality else None,
        "task_inputs": task.get("inputs"), "task_criteria": task.get("criteria"),
        "turn_models": summary.turn_models, **metadata,
    }


def _verdict(quality: Mapping[str, Any] | None) -> str | None:
    if not quality or not isinstance(quality.get("passed"), bool):
        return None
    return "PASS" if quality["passed"] else "FAIL"


def _metadata(*sources: Any) -> dict[str, Any]:
    """``metadata_{key}`` columns; the RunContext's metadata wins over the task's."""
    merged: dict[str, Any] = {}
    for source in sources:
        if isinstance(source, dict):
            merged.update({f"metadata_{k}": v for k, v in source.items()})
    return merged


def messages_df(source: Source, *, strict: bool = True) -> Result:
    """One row per part of each stored message; ``order`` is the message's index in its
    session, ``part`` the part's position in the message. ``output``: on the parts of the last
    assistant message of a run made with ``output_type=``, its validated output (as JSON)."""
    problems = Problems(strict)
    table = Table(MESSAGE_COLUMNS)
    outputs = _read.structured_outputs(source, problems)
    samples = identities(source)
    stored = list(_read.messages(source, problems))
    answers: dict[str, int] = {m.run_id: m.idx for m in stored if m.run_id in outputs
                               and m.data.get("role") == "assistant"}  # each run's last one wins
    for message in stored:
        report = problems.reporter("messages", message.label)
        parts = message.data.get("parts")
        if not isinstance(parts, list) or not isinstance(message.data.get("role"), str):
            report("data lacks a role or a list of parts")
            continue
        for index, part in enumerate(parts):
            if not isinstance(part, dict) or not isinstance(part.get("kind"), str):
                report(f"part {index} has no kind")
                continue
            kind = part["kind"]
            text = part.get("content") if kind == "tool_result" else part.get("text")
            table.add({"session_id": message.session_id, "run_id": message.run_id,
                       "parent_run_id": message.parent_run_id,
                       "message_id": f"{message.session_id}:{message.idx}",
                       "order": message.idx, **samples.of(message.run_id, message.session_id),
                       "part": index, "role": message.data["role"],
                       "kind": kind, "text": text, "tool_name": part.get("name"),
                       "tool_call_id": part.get("id") if kind == "tool_call" else part.get("call_id"),
                       "tool_args": part.get("args") if kind == "tool_call" else None,
                       "tool_is_error": part.get("is_error") if kind == "tool_result" else None,
                       "output": outputs.get(message.run_id or "")
                       if answers.get(message.run_id or "") == message.idx else None,
                       **_media_columns(part)}, report)
    return problems.result(table.frame())


def _media_columns(part: dict[str, Any]) -> dict[str, Any]:
    """An image's or document's type, reference (``sha256:...`` or its URL) and size in bytes;
    for a tool result, those of the media it returned. Never the bytes."""
    media = [part] if part.get("kind") in ("image", "document") else part.get("media") or []
    media = [m for m in media if isinstance(m, dict)]
    if not media:
        return {"media_type": None, "media_ref": None, "media_size": None}
    refs = [m.get("url") or f"sha256:{m.get('sha256', '')}" for m in media]
    return {"media_type": ", ".join(str(m.get("media_type") or "") for m in media),
            "media_ref": ", ".join(refs), "media_size": sum(int(m.get("size") or 0) for m in media)}


def tool_calls_df(source: Source, *, strict: bool = True) -> Result:
    """One row per tool call, joined with its result and its (last) governance decision."""
    problems = Problems(strict)
    types = {"tool.call", "tool.result", "governance.decision", "model.response"}

    def checked(events: Iterable[EventRow]) -> Iterator[EventRow]:
        # Problems are reported as the rows are read, in the store's order. The pairing keeps
        # every call's rows until the end, so they are made light first: no JSON text, and one
        # string object for the ids and types that thousands of rows repeat.
        for event in events:
            if event.type == "tool.call":
                _check_required(event, problems)
            event.raw = None
            event.type, event.run_id = sys.intern(event.type), sys.intern(event.run_id)
            event.session_id = sys.intern(event.session_id)
            yield event

    table = Table(TOOL_CALL_COLUMNS)
    orders: dict[str, int] = {}
    samples = identities(source)
    traces = tool_calls(checked(_read.events(source, problems, types=types)))
    traces.reverse()
    while traces:  # each trace goes once its row is in the table: the peak is one or the other
        trace = traces.pop()
        call = trace.call
        assert call is not None  # every trace starts from its call
        order = orders.get(call.session_id, 0)
        orders[call.session_id] = order + 1
        table.add({**_tool_call_values(trace, call, order), **samples.of(call.run_id, call.session_id)},
                  problems.reporter("events", call.label))
    return problems.result(table.frame())


def _tool_call_values(trace: ToolCallTrace[EventRow], call: EventRow, order: int) -> dict[str, Any]:
    row = {"session_id": call.session_id, "run_id": call.run_id, "event_id": call.event_id,
           "parent_run_id": call.parent_run_id, "order": order, "ts": call.ts,
           "model_turn": trace.turn, "policy_decisions": len(trace.decisions),
           **flatten(call.type, call.data)}
    if trace.result is not None:
        result = flatten(trace.result.type, trace.result.data)
        row.update({k: v for k, v in result.items() if k != "tool_name"}, result_ts=trace.result.ts)
    for decision in trace.decisions:  # the last decision's fields win
        row.update({k: v for k, v in flatten(decision.type, decision.data).items()
                    if k.startswith("policy_")})
    row.pop("tool_traceback", None)  # long; events_df has it
    return row


def signals_df(source: Source, *, strict: bool = True) -> Result:
    """One row per signal a session received, with the attention policy's decision (from the
    store's signals table, and any ``signal.decision`` events); empty with the documented
    columns when there are none."""
    problems = Problems(strict)
    table = Table(SIGNAL_COLUMNS)
    orders: dict[str, int] = {}
    seen: set[tuple[str, Any]] = set()
    for row in _read.signals(source, problems):
        _add_signal(table, orders, seen, problems.reporter("signals", row.label), row.session_id,
                    row.run_id, row.label, row.ts, row.seq,
                    {"action": row.action, "reason": row.reason, "signal": row.signal})
    for event in _read.events(source, problems, types={"signal.decision"}):
        _add_signal(table, orders, seen, problems.reporter("events", event.label),
                    event.session_id, event.run_id or None, event.event_id, event.ts, None,
                    event.data)
    return problems.result(table.frame())


def _add_signal(table: Table, orders: dict[str, int], seen: set[tuple[str, Any]],
                report: Callable[[str], None], session_id: str, run_id: str | None,
                record_id: str, ts: Any, seq: int | None, data: dict[str, Any]) -> None:
    flat = flatten("signal.decision", data)
    key = (session_id, flat.get("signal_id") or record_id)
    if key in seen:  # the same decision stored as a signal record and as an event
        return
    seen.add(key)
    if "signal_action" not in flat:
        report("data lacks the key(s) action")
    observed = flat.get("signal_observed_at")
    try:
        flat["signal_observed_at"] = _read.parse_time(observed)
    except ValueError:
        report(f"signal observed_at {observed!r} is not an ISO 8601 timestamp")
        flat["signal_observed_at"] = None
    order = orders.get(session_id, 0)
    orders[session_id] = order + 1
    table.add({"session_id": session_id, "run_id": run_id, "event_id": record_id,
               "parent_run_id": None, "order": order, "ts": ts, "signal_seq": seq, **flat}, report)


def feedback_df(source: Source, *, strict: bool = True) -> Result:
    """One row per feedback record: ``feedback_kind`` (``rating`` for ``session.feedback(...)``,
    or tool, governance, attention, quality, compaction, run), ``feedback_score``,
    ``feedback_comment``, and the record's other data keys as ``feedback_*`` columns. Read from
    the store's feedback table and any ``feedback.recorded`` events; empty with the documented
    columns when there is none."""
    problems = Problems(strict)
    table = Table(dict(FEEDBACK_COLUMNS))
    orders: dict[str, int] = {}
    samples = identities(source)
    known = {run.run_id for run in _read.runs(source, Problems(strict=False))}
    for row in _read.feedback(source, problems):
        if row.run_id is not None and row.run_id not in known:
            problems.report("feedback", row.label, f"it is about run {row.run_id!r}, which is "
                            f"not in the store")
        order = row.position
        orders[row.session_id] = max(orders.get(row.session_id, 0), order + 1)
        flat = flatten(FEEDBACK_EVENT, {"kind": row.kind, **row.data})
        table.add({"session_id": row.session_id, "run_id": row.run_id,
                   "event_id": f"{row.session_id}:feedback:{order}", "parent_run_id": None,
                   "order": order, **samples.of(row.run_id, row.session_id), "ts": row.ts,
                   **flat}, problems.reporter("feedback", row.label))
    for event in _read.events(source, problems, types={FEEDBACK_EVENT}):
        order = orders.get(event.session_id, 0)
        orders[event.session_id] = order + 1
        flat = flatten(FEEDBACK_EVENT, event.data)
        table.add({"session_id": event.session_id, "run_id": event.run_id,
                   "event_id": event.event_id, "parent_run_id": event.parent_run_id,
                   "order": order, "ts": event.ts, **flat}, problems.reporter("events", event.label))
    return problems.result(table.frame())
