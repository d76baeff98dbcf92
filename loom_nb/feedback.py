"""FeedbackPolicy: which records of what happened are kept, and where they go.

Records are made from a session's events as they happen: tool outcomes (``tool``), governance
decisions (``governance``), attention decisions (``attention``), quality verdicts (``quality``),
compactions and renewals (``compaction``) and run outcomes (``run``), plus user ratings given
with ``session.feedback(run_id, score, comment)`` (``rating``, always kept). Records are stored
with the session and sent to the policy's sinks (:class:`JSONLSink` writes one JSON object a
line). :func:`summarize` turns records into the numbers to improve prompts and policies with:
pass rates, tool error rates, denials, ratings.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Protocol, TypeAlias

from .errors import ConfigError
from .events import (GovernanceDecisionData, QualityVerdictData, RunEvent, RunFinishedData,
                     SignalDecisionData, ToolResultData, payload, utcnow)

__all__ = ["FeedbackKind", "FeedbackPolicy", "FeedbackRecord", "FeedbackSink", "FeedbackSummary", "JSONLSink",
           "current_ratings", "summarize"]

#: ``score``: a scorer's score of an evaluation run (loom_nb.scoring), never made by the policy.
#: ``approval``: a person's standing decisions (``approve(..., remember=True)`` and
#: ``session.forget_approval``), always kept, never made by the policy.
FeedbackKind: TypeAlias = Literal["tool", "governance", "attention", "quality", "compaction", "run", "rating",
                              "score", "approval"]
#: The kinds a FeedbackPolicy can record.
KINDS: frozenset[str] = frozenset(("tool", "governance", "attention", "quality", "compaction", "run", "rating"))


@dataclass(frozen=True, kw_only=True)
class FeedbackRecord:
    """One piece of feedback about a run or a session."""

    session_id: str
    run_id: str | None
    kind: FeedbackKind
    data: dict[str, Any]
    ts: datetime = field(default_factory=utcnow)

    def to_dict(self) -> dict[str, Any]:
        return {"session_id": self.session_id, "run_id": self.run_id, "kind": self.kind,
                "ts": self.ts.isoformat(), "data": self.data}


class FeedbackSink(Protocol):
    """Where records go besides the session store."""

    def write(self, record: FeedbackRecord) -> None: ...


class JSONLSink:
    """Appends each record as one JSON line to ``path`` (thread-safe)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        from pathlib import Path

        self.path = Path(path)
        if not self.path.parent.is_dir():
            raise ConfigError(f"The folder of the feedback file {str(self.path)!r} does not exist; create it first.")
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JSONLSink({str(self.path)!r})"

    def write(self, record: FeedbackRecord) -> None:
        line = json.dumps(record.to_dict(), ensure_ascii=False, default=str)
        with self._lock, self.path.open("a", encoding="utf-8") as handle:
            handle.write(line + "\n")


def _record_data(event: RunEvent) -> tuple[FeedbackKind, dict[str, Any]] | None:
    kind = event.type
    if kind == "tool.result":
        result = payload(event, ToolResultData)
        return "tool", {"name": result["name"], "is_error": result["is_error"],
                        "error_type": result.get("error_type"), "duration_ms": result.get("duration_ms")}
    if kind == "governance.decision":
        decision = payload(event, GovernanceDecisionData)
        return "governance", {"name": decision["name"], "action": decision["action"],
                              "reason": decision["reason"], "check": decision["check"]}
    if kind == "signal.decision":
        attention = payload(event, SignalDecisionData)
        signal = attention["signal"]
        return "attention", {"action": attention["action"], "reason": attention["reason"],
                             "source": signal["source"], "type": signal["type"], "urgency": signal["urgency"]}
    if kind == "quality.verdict":
        verdict = payload(event, QualityVerdictData)
        return "quality", {"attempt": verdict.get("attempt"), "passed": verdict.get("passed"),
                           "critique": verdict.get("critique"), "gate": verdict.get("gate")}
    if kind in ("context.compacted", "context.renewed"):
        data = event.data  # the two types share these keys
        return "compaction", {"event": kind, "before_tokens": data.get("before_tokens"),
                              "after_tokens": data.get("after_tokens")}
    if kind == "run.finished":
        finished = payload(event, RunFinishedData)
        usage: Mapping[str, Any] = finished.get("usage") or {}
        return "run", {"status": finished["status"], "turns": finished["turns"],
                       "error_type": finished.get("error_type"),
                       "tokens": usage.get("input_tokens", 0) + usage.get("output_tokens", 0)}
    return None


class FeedbackPolicy:
    """Which feedback records are kept and where they go. Build with the static methods."""

    def __init__(self, kinds: Iterable[str] = (), sinks: Sequence[FeedbackSink] = ()) -> None:
        unknown = set(kinds) - KINDS
        if unknown:
            raise ConfigError(f"Unknown feedback kinds {sorted(unknown)}; choose from {sorted(KINDS)}.")
        self.kinds = frozenset(kinds) | {"rating"}
        self.sinks = tuple(sinks)

    def __repr__(self) -> str:
        return f"FeedbackPolicy(kinds={sorted(self.kinds)}, sinks={list(self.sinks)})"

    @staticmethod
    def none() -> FeedbackPolicy:
        """Keep only the ratings people give."""
        return FeedbackPolicy()

    @staticmethod
    def collect(kinds: Iterable[str] | None = None, *, sinks: Sequence[FeedbackSink] = (),
                jsonl: str | os.PathLike[str] | None = None) -> FeedbackPolicy:
        """Keep records of ``kinds`` (all by default), also writing them to ``jsonl`` / ``sinks``."""
        all_sinks = [*sinks, *([JSONLSink(jsonl)] if jsonl is not None else [])]
        return FeedbackPolicy(KINDS if kinds is None else kinds, all_sinks)

    def record_for(self, event: RunEvent) -> FeedbackRecord | None:
        """The record this policy keeps for ``event``, if any."""
        made = _record_data(event)
        if made is None or made[0] not in self.kinds:
            return None
        kind, data = made
        return FeedbackRecord(session_id=event.session_id, run_id=event.run_id or None, kind=kind,
                              data=data, ts=event.ts)

    def send(self, record: FeedbackRecord) -> None:
        for sink in self.sinks:
            sink.write(record)


def current_ratings(records: Iterable[FeedbackRecord]) -> dict[tuple[str, str | None], FeedbackRecord]:
    """Each run's rating, by (session id, run id): its newest, since rating again replaces it.

    The log keeps every rating (a sink has sent each already); what counts is the last one.
    """
    return {(r.session_id, r.run_id): r for r in records if r.kind == "rating"}


def summarize(records: Iterable[FeedbackRecord]) -> FeedbackSummary:
    """Pass rates, tool error rates, denials and ratings from feedback records.

    ``ratings`` counts rated runs and ``mean_rating`` averages each run's newest rating.
    """
    by_kind: dict[str, list[FeedbackRecord]] = {}
    records = list(records)
    for record in records:
        if record.kind != "rating":
            by_kind.setdefault(record.kind, []).append(record)
    by_kind["rating"] = list(current_ratings(records).values())
    runs = by_kind.get("run", [])
    tools = by_kind.get("tool", [])
    verdicts = by_kind.get("quality", [])
    decisions = Counter(r.data["action"] for r in by_kind.get("governance", []))
    ratings = [float(r.data["score"]) for r in by_kind.get("rating", [])]
    errors = Counter(r.data["name"] for r in tools if r.data["is_error"])
    return FeedbackSummary({
        "runs": len(runs),
        "completed_rate": _rate(sum(r.data["status"] == "completed" for r in runs), len(runs)),
        "quality_pass_rate": _rate(sum(bool(r.data["passed"]) for r in verdicts), len(verdicts)),
        "tool_calls": len(tools),
        "tool_error_rate": _rate(sum(errors.values()), len(tools)),
        "tool_errors_by_tool": dict(errors),
        "denials": decisions.get("deny", 0),
        "approvals_asked": decisions.get("ask", 0),
        "compactions": len(by_kind.get("compaction", [])),
        "ratings": len(ratings),
        "mean_rating": round(sum(ratings) / len(ratings), 3) if ratings else None,
    })


class FeedbackSummary(dict[str, Any]):
    """The numbers of :func:`summarize`: a plain dict, that prints as a small table."""

    def _rows(self) -> list[tuple[str, str]]:
        rows = []
        for key, value in self.items():
            if value is None:
                shown = "-"
            elif key.endswith("_rate"):
                shown = f"{value:.1%}".replace(".0%", "%")
            elif isinstance(value, dict):
                shown = ", ".join(f"{k} {v}" for k, v in value.items()) or "none"
            else:
                shown = f"{value:g}" if isinstance(value, float) else str(value)
            rows.append((key.replace("_", " "), shown))
        return rows

    def __repr__(self) -> str:
        rows = self._rows()
        width = max((len(k) for k, _ in rows), default=0)
        return "\n".join(["Feedback summary"] + [f"  {k:<{width}}  {v}" for k, v in rows])

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))

    def _repr_html_(self) -> str:
        import html

        from .display.common import table_html
        cells = [[html.escape(k), html.escape(v)] for k, v in self._rows()]
        return "<b>Feedback summary</b>" + table_html(["", "value"], cells, align_right=[1])


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None
