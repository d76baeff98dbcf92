"""ContinuityPolicy: what carries over a compaction, a renewal and a session restored elsewhere.

* Compaction keeps the most recent ``keep_recent`` messages whole and folds the older ones into a
  summary in the memory partition.
* Renewal (when compaction is not enough) replaces memory and history with one handoff note
  written by the summarizer, plus the last ``renewal_recent`` messages and, with
  ``carry_open_tasks``, the goals of runs that did not complete.
* A restored session loads the latest compacted state and the messages after it
  (``restore="checkpoint"``), or every message ever stored (``restore="full"``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias

from .errors import ConfigError
from .messages import Message

__all__ = ["ContinuityPolicy", "RestoreMode", "safe_cut"]

#: What a restored session starts from: the latest compaction checkpoint, or its full history.
RestoreMode: TypeAlias = Literal["checkpoint", "full"]

SUMMARY_INSTRUCTIONS = (
    "Summarize the conversation below for your own later use. Keep facts, decisions, names, "
    "numbers, file paths, open questions and what remains to be done. Write plain sentences, no "
    "preamble."
)
HANDOFF_INSTRUCTIONS = (
    "Write a handoff note for whoever continues this work with no other record of it: the goal, "
    "what has been done and found (with the facts, names and numbers that matter), what is still "
    "open, and the next steps. Plain sentences, no preamble."
)


@dataclass(frozen=True, kw_only=True)
class ContinuityPolicy:
    """What survives when context is compacted or renewed, and what a restored session loads.

    Attributes:
        keep_recent: messages kept whole by a compaction (moved back to a turn boundary).
        renewal_recent: messages kept whole by a renewal.
        carry_open_tasks: a renewal lists the goals of the session's runs that did not complete.
        restore: ``"checkpoint"`` (the latest compacted state and later messages) or ``"full"``.
        summary_instructions: what the summarizer is asked for in a compaction.
        handoff_instructions: what the summarizer is asked for in a renewal.
    """

    keep_recent: int = 6
    renewal_recent: int = 2
    carry_open_tasks: bool = True
    restore: RestoreMode = "checkpoint"
    summary_instructions: str = SUMMARY_INSTRUCTIONS
    handoff_instructions: str = HANDOFF_INSTRUCTIONS

    def __post_init__(self) -> None:
        if self.keep_recent < 1 or self.renewal_recent < 0:
            raise ConfigError("ContinuityPolicy: keep_recent must be >= 1 and renewal_recent >= 0.")
        if self.restore not in ("checkpoint", "full"):
            raise ConfigError("ContinuityPolicy(restore=...) takes 'checkpoint' or 'full'.")


def safe_cut(history: Sequence[Message], keep: int) -> int:
    """The index where the kept tail of ``history`` starts: at most ``keep`` messages, starting at
    a turn boundary, so a tool result is never separated from the call it answers."""
    if keep <= 0:
        return len(history)
    cut = max(len(history) - keep, 0)
    while cut < len(history) and history[cut].role == "tool":
        cut += 1
    return cut
