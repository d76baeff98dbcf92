"""The task table of :func:`loom_nb.evaluate`: rows become :class:`EvalTask` items.

A row has an ``input`` (or ``goal``) and optionally an ``id``, a ``target`` (the expected answer,
any JSON value, or a list of acceptable answers), ``inputs``, ``criteria`` and ``metadata``.
Every other column is task metadata: it is kept with the run (``metadata_{column}`` in the
frames) and can group the metrics. Ids are explicit or a hash of the task's content, stable
across calls, so a second call finds the same sessions again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._words import a_type
from .errors import ConfigError
from .task import RuntimeTask

__all__ = ["EvalTask", "normalize_tasks", "plain"]

#: Columns with a meaning of their own; any other column is metadata.
_KNOWN = frozenset({"id", "input", "goal", "target", "inputs", "criteria", "metadata"})


@dataclass(frozen=True)
class EvalTask:
    """One task of an evaluation: its id, what the agent runs, and what scorers compare with."""

    task_id: str
    task: RuntimeTask
    target: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)


def normalize_tasks(tasks: Any) -> list[EvalTask]:
    """Tasks from a DataFrame, a list of dict rows, or a list of RuntimeTask / str."""
    if hasattr(tasks, "columns") and hasattr(tasks, "to_dict"):
        columns = [str(c) for c in tasks.columns]
        records = tasks.to_dict("records")
    elif isinstance(tasks, Iterable) and not isinstance(tasks, str | bytes | Mapping):
        records, columns = list(tasks), None
    else:
        raise ConfigError("evaluate(tasks=...) takes a DataFrame with an 'input' (or 'goal') "
                          "column, a list of dict rows, or a list of RuntimeTask / str.")
    if columns is not None:
        _check_columns(columns)
    items = [_item(position, record) for position, record in enumerate(records)]
    return _with_ids(items)


def _check_columns(columns: list[str]) -> None:
    if "input" in columns and "goal" in columns:
        raise ConfigError("The task table has both an 'input' and a 'goal' column; keep one "
                          "(they mean the same: what the agent is asked).")
    if "input" not in columns and "goal" not in columns:
        raise ConfigError(f"The task table needs an 'input' (or 'goal') column; it has {columns}.")


def _item(position: int, record: Any) -> tuple[str | None, EvalTask]:
    if isinstance(record, str):
        record = RuntimeTask(record)
    if isinstance(record, RuntimeTask):
        explicit = record.metadata.get("id")
        target = record.metadata.get("target")
        return (None if explicit is None else str(explicit),
                EvalTask("", record, target, dict(record.metadata)))
    if not isinstance(record, Mapping):
        raise ConfigError(f"Task {position} is {a_type(record)}; evaluate() takes RuntimeTask "
                          f"objects, goal strings, or dict rows with an 'input'.")
    return _from_record(position, {str(k): v for k, v in record.items()})


def _from_record(position: int, record: dict[str, Any]) -> tuple[str | None, EvalTask]:
    if "input" in record and "goal" in record:
        raise ConfigError(f"Task {position} has both 'input' and 'goal'; keep one.")
    goal = record.get("input", record.get("goal"))
    if not isinstance(goal, str) or not goal.strip():
        raise ConfigError(f"Row {position} of the task table has no input (got {goal!r}); "
                          f"every task needs a non-empty 'input' (or 'goal') string.")
    fields = {k: plain(_cell(record.get(k), k, position)) for k in ("inputs", "criteria", "metadata")}
    extra = {k: plain(v) for k, v in record.items() if k not in _KNOWN}
    metadata = {**(fields["metadata"] or {}), **{k: (None if _missing(v) else v)
                                                 for k, v in extra.items()}}
    target = record.get("target")
    target = None if _missing(target) else plain(target)
    _check_json(target, position, "target")
    _check_json(metadata, position, "metadata")
    task = RuntimeTask(goal, fields["inputs"] or {}, fields["criteria"] or [], metadata)
    task_id = record.get("id")
    return (None if _missing(task_id) else str(plain(task_id)), EvalTask("", task, target, metadata))


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
    if hasattr(value, "tolist") and expected is list:
        value = value.tolist()  # a numpy array cell from a Parquet round trip
    if not isinstance(value, expected):
        raise ConfigError(f"Row {position}, column {column!r} must be a {expected.__name__}, "
                          f"got {type(value).__name__}.")
    return value


def _check_json(value: Any, position: int, what: str) -> None:
    """Targets and metadata are stored as JSON: say which row holds what cannot be."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"Row {position}: the {what} cannot be stored as JSON ({exc}). Use "
                          f"strings, numbers, booleans, lists and dicts.") from None


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and value != value) or (
        type(value).__name__ in ("NAType", "NaTType"))


def plain(value: Any) -> Any:
    """numpy scalars and arrays in table cells become Python values, so they are JSON-ready."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if hasattr(value, "dtype") and hasattr(value, "tolist"):
        return plain(value.tolist())
    if isinstance(value, float) and value != value:
        return None
    return value


def _with_ids(items: list[tuple[str | None, EvalTask]]) -> list[EvalTask]:
    """Explicit ids as given; otherwise a hash of the task's content, stable across calls, with
    ``-2``, ``-3`` ... for repeated identical tasks."""
    out: list[EvalTask] = []
    seen: set[str] = set()
    for explicit, item in items:
        if explicit is not None:
            if explicit in seen:
                raise ConfigError(f"The task id {explicit!r} appears twice; task ids must be unique.")
            task_id = explicit
        else:
            content = {**item.task.to_dict(), **({"target": item.target}
                                                  if item.target is not None else {})}
            digest = hashlib.sha1(json.dumps(content, sort_keys=True, default=str)
                                  .encode()).hexdigest()[:12]
            task_id, n = digest, 1
            while task_id in seen:
                n += 1
                task_id = f"{digest}-{n}"
        seen.add(task_id)
        out.append(EvalTask(task_id, item.task, item.target, item.metadata))
    return out
