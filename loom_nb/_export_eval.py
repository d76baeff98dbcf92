"""Evaluation columns of the export frames: which sample a record belongs to.

:func:`loom_nb.evaluate` runs each sample with ``RunContext(metadata={"loom_eval": {...}})``
(evaluation, variant, task id, epoch, attempt, target), which its ``run.started`` event keeps.
From it ``runs_df`` takes ``evaluation``, ``variant``, ``task_id``, ``epoch``, ``attempt``,
``target`` and ``superseded`` (a later attempt of the same sample exists: a retry after a crash),
and the other frames ``task_id``, ``epoch`` and ``variant``, looked up by run (a sub-run by its
parent) and, for records without a run, by session.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from . import _export_read as _read
from ._export_read import EventRow

__all__ = ["EVAL_KEY", "IDENTITY_COLUMNS", "RUN_EVAL_COLUMNS", "Identities", "identities",
           "mark_superseded", "of_started"]

EVAL_KEY = "loom_eval"
IDENTITY_COLUMNS: dict[str, str] = {"task_id": "str", "epoch": "Int64", "variant": "str"}
RUN_EVAL_COLUMNS: dict[str, str] = {
    "evaluation": "str", "variant": "str", "task_id": "str", "epoch": "Int64", "attempt": "Int64",
    "superseded": "boolean", "target": "json"}


def of_started(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``loom_eval`` labels of a ``run.started`` event's data, if it has them."""
    context = data.get("context")
    metadata = context.get("metadata") if isinstance(context, dict) else None
    found = metadata.get(EVAL_KEY) if isinstance(metadata, dict) else None
    return found if isinstance(found, dict) else None


class Identities:
    """task_id / epoch / variant by run id and by session id."""

    def __init__(self) -> None:
        self.by_run: dict[str, dict[str, Any]] = {}
        self.by_session: dict[str, dict[str, Any]] = {}
        self.parents: dict[str, str] = {}

    def add(self, event: EventRow) -> None:
        self.add_labels(event.run_id, event.session_id, event.parent_run_id,
                        of_started(event.data))

    def add_labels(self, run_id: str, session_id: str, parent: str | None, found: Any) -> None:
        if parent:
            self.parents[run_id] = parent
        if not isinstance(found, dict):
            return
        columns = {k: found.get(k) for k in IDENTITY_COLUMNS}
        self.by_run[run_id] = columns
        self.by_session.setdefault(session_id, columns)

    def of(self, run_id: str | None, session_id: str | None) -> dict[str, Any]:
        if run_id is not None:
            seen = 0
            while run_id is not None and seen < 64:  # a sub-run: its parent's sample
                found = self.by_run.get(run_id)
                if found is not None:
                    return found
                run_id, seen = self.parents.get(run_id), seen + 1
        return self.by_session.get(session_id or "", {})


def identities(source: Any) -> Identities:
    """The identities of every run in ``source`` (one read of its ``run.started`` events;
    malformed records are reported by the frame's own read, not here)."""
    found = Identities()
    for run_id, session_id, parent, labels in _read.samples(source):
        found.add_labels(run_id, session_id, parent, labels)
    return found


def mark_superseded(rows: list[dict[str, Any]]) -> None:
    """``superseded`` on each evaluation run: True when a later attempt of its sample exists."""
    latest: dict[tuple[Any, ...], int] = {}

    def key(row: dict[str, Any]) -> tuple[Any, ...]:
        return (row.get("evaluation"), row.get("variant"), row.get("task_id"), row.get("epoch"))

    for row in rows:
        attempt = row.get("attempt")
        if isinstance(attempt, int) and row.get("task_id") is not None:
            latest[key(row)] = max(latest.get(key(row), 0), attempt)
    for row in rows:
        attempt = row.get("attempt")
        if isinstance(attempt, int) and row.get("task_id") is not None:
            row["superseded"] = attempt < latest[key(row)]
