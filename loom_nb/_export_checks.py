"""Consistency checks of the export frames beyond each value's type: what ``strict=True``
raises for and ``strict=False`` lists. The kernel never writes these; a store edited by hand,
by another tool, or half-written by a crashed process may hold them."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from ._export_read import EventRow

__all__ = ["RUN_STATUSES", "CallTracker", "check_run", "check_usage"]

#: Every status a stored run can have: the RunResult statuses, and ``running`` while it runs.
RUN_STATUSES: frozenset[str] = frozenset(("running", "completed", "failed", "cancelled",
                                          "needs_approval", "limit", "interrupted"))
_TOKENS = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "requests")


def check_usage(usage: Any, what: str, report: Callable[[str], None]) -> None:
    """Token counts are never negative (a negative count would pass every type check)."""
    if not isinstance(usage, Mapping):
        return
    for key in _TOKENS:
        value = usage.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value < 0:
            report(f"{what} {key} is negative ({value})")


def check_run(status: Any, usage: Any, quality: Mapping[str, Any] | None,
              report: Callable[[str], None]) -> None:
    """A run's status is one loom_nb writes, its usage is not negative, its verdict is a bool."""
    if status not in RUN_STATUSES:
        report(f"status {status!r} is not a run status (one of {sorted(RUN_STATUSES)})")
    check_usage(usage, "usage", report)
    if quality is not None and not isinstance(quality.get("passed"), bool):
        report(f"its quality.verdict has passed={quality.get('passed')!r}; it must be true or "
               f"false")


class CallTracker:
    """A ``tool.result`` must answer a ``tool.call`` of the same run stored before it."""

    def __init__(self) -> None:
        self.calls: set[tuple[str, Any]] = set()

    def see(self, event: EventRow, report: Callable[[str], None]) -> None:
        if event.type == "tool.call":
            self.calls.add((event.run_id, event.data.get("call_id")))
        elif event.type == "tool.result":
            call_id = event.data.get("call_id")
            if call_id is not None and (event.run_id, call_id) not in self.calls and event.data_ok:
                report(f"tool.result for call {call_id!r} has no tool.call in its run")
        elif event.type == "model.response":
            check_usage(event.data.get("usage"), "usage", report)
