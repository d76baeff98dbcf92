"""The per-run summary of ``runs_df`` (:mod:`loom_nb.export`): what it takes from a run's events
and how one row of the frame is made of it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import _export_read as _read
from ._export_eval import RUN_EVAL_COLUMNS, of_started
from ._export_read import EventRow
from .events import QualityVerdictData, RunFinishedData, RunStartedData, ToolResultData, payload

__all__ = ["RunSummary", "run_values"]


@dataclass
class RunSummary:
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


def run_values(run: _read.RunRow, order: int, summary: RunSummary,
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
