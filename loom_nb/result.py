"""RunResult: what a run produced, with the events that record how."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .errors import ApprovalMismatchError, ConfigError, RunError, run_error
from .events import RunEvent, ToolCallTrace, tool_calls
from .messages import Message, Usage
from .limits import LimitName

if TYPE_CHECKING:
    from .quality import Verdict
    from .session import Session

__all__ = ["PendingApproval", "RunError", "RunResult", "RunStatus", "ToolCallRecord"]

#: ``interrupted``: the process running it ended first (see Session.runs); never set by a live run.
RunStatus: TypeAlias = Literal["completed", "failed", "cancelled", "needs_approval", "limit",
                               "interrupted"]


#: One tool call of a run and its outcome, read from the run's events (see events.tool_calls).
#: (A plain alias, not ``ToolCallTrace[RunEvent]``, so that ``isinstance`` works with it.)
ToolCallRecord = ToolCallTrace


@dataclass(frozen=True, kw_only=True)
class PendingApproval:
    """A tool call waiting for a person's decision.

    A call a sub-agent made has ``via`` set: the id of the calling run's ``delegate`` call. Its
    ``call_id`` is then ``"<via>/<the sub-agent's call id>"``, unique in the calling run.
    """

    call_id: str
    name: str
    args: dict[str, Any]
    reason: str
    via: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(kw_only=True, repr=False)
class RunResult:
    """The outcome of one run.

    Attributes:
        output: the final answer (for ``status="limit"``, the last text the model wrote). With
            ``output_type=T``: the validated ``T`` (None when the run did not complete).
        text: the final answer's raw text (with ``output_type``, the JSON the model wrote).
        output_type: with ``output_type=T``, the type's name.
        status: ``completed``, ``failed``, ``cancelled``, ``needs_approval`` or ``limit``; a
            stored run whose process died before it ended reads ``interrupted``.
        run_id: the run's id.
        session_id: the session it ran in.
        events: the run's stored events, in order (``model.delta`` is live-only, see events).
        usage: tokens summed over the run's model calls.
        error: what went wrong, when ``status`` is not ``completed``.
        limit: which limit ended the run, when ``status="limit"``.
        messages: the messages this run added to the session's history.
        agent: the agent's name.
        model: the model's ``provider:name``.
        turns: how many model responses the run used.
        pending: for ``status="needs_approval"``, the tool calls waiting for a decision.
        verdict: the quality gate's verdict on the answer kept, when a gate is set.
        attempts: how many attempts the harness made.
        winner: which attempt's answer the run kept (1-based).
        parent_run_id: the run that started this one (delegation, best-of candidates).
    """

    output: Any
    status: RunStatus
    run_id: str
    session_id: str
    events: list[RunEvent] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    error: str | None = None
    error_type: str | None = None
    limit: LimitName | None = None
    messages: tuple[Message, ...] = ()
    agent: str = ""
    model: str = ""
    turns: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    pending: tuple[PendingApproval, ...] = ()
    verdict: Verdict | None = None
    attempts: int = 0
    winner: int | None = None
    parent_run_id: str | None = None
    text: str = ""
    output_type: str | None = None
    session: Session | None = field(default=None, compare=False)
    _decisions: dict[str, str | None] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if not self.text and isinstance(self.output, str):
            self.text = self.output

    @property
    def ok(self) -> bool:
        return self.status == "completed"

    @property
    def cost(self) -> float | None:
        """What the run cost in USD (``usage.cost``): None when a model's price is unknown."""
        return self.usage.cost

    @property
    def duration_ms(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds() * 1000

    @property
    def tool_calls(self) -> list[ToolCallTrace[RunEvent]]:
        """The run's tool calls with their results, in the order they were made."""
        return tool_calls(self.events)

    # -- approvals ---------------------------------------------------------------------------------

    def approve(self, *calls: str | PendingApproval) -> RunResult:
        """Approve waiting calls, by id or as the :class:`PendingApproval` shown (all of them when
        none is given); then :meth:`resume`. An approval binds to the call's id, tool and
        arguments as shown here: if the run waits on anything else under that id when it
        resumes, nothing runs and :class:`~loom_nb.errors.ApprovalMismatchError` says so."""
        for call_id in self._waiting(calls):
            self._decisions[call_id] = None
        return self

    def reject(self, *calls: str | PendingApproval, reason: str = "") -> RunResult:
        """Reject waiting calls (all when none is given); the model is told ``reason``."""
        for call_id in self._waiting(calls):
            self._decisions[call_id] = reason or "no reason given"
        return self

    @property
    def undecided(self) -> list[PendingApproval]:
        """The waiting calls that have no decision yet."""
        return [p for p in self.pending if p.call_id not in self._decisions]

    def _waiting(self, calls: tuple[str | PendingApproval, ...]) -> list[str]:
        if self.status != "needs_approval":
            raise ConfigError(f"Run {self.run_id} is {self.status!r}; only a run that needs "
                              f"approval has calls to approve or reject.")
        waiting = {p.call_id: p for p in self.pending}
        call_ids = [c.call_id if isinstance(c, PendingApproval) else c for c in calls]
        unknown = [c for c in call_ids if c not in waiting]
        if unknown:
            raise ConfigError(f"{unknown} are not waiting for approval in run {self.run_id}; "
                              f"the waiting calls are {list(waiting)}.")
        for shown in calls:  # a PendingApproval from elsewhere must be the call waiting here
            if isinstance(shown, PendingApproval) and (shown.name, shown.args) != (
                    waiting[shown.call_id].name, waiting[shown.call_id].args):
                mine = waiting[shown.call_id]
                raise ApprovalMismatchError(
                    f"The call {shown.call_id!r} waiting in run {self.run_id} is {mine.name}"
                    f"({mine.args!r}), not {shown.name}({shown.args!r}). Decide on the calls in "
                    f"this result's .pending.")
        return call_ids or list(waiting)

    async def resume(self) -> RunResult:
        """Continue the paused run with the decisions made; returns the run's new result."""
        if self.session is None:
            raise ConfigError("This RunResult has no session to resume in; use session.resume(run_id, ...).")
        return await self.session.resume(self.run_id, dict(self._decisions),
                                         seen={p.call_id: p for p in self.pending})

    def resume_sync(self) -> RunResult:
        """:meth:`resume` from sync code (also inside a Jupyter cell)."""
        from ._bridge import run_sync

        return run_sync(self.resume())

    def raise_for_status(self) -> RunResult:
        """Return self when the run completed; otherwise raise :class:`RunError`, which for a
        failed run is also an instance of the error class it failed with (``error_type``)."""
        if self.status == "completed":
            return self
        raise run_error(f"Run {self.run_id} ended with status {self.status!r}: {self.error}", self)

    def __str__(self) -> str:
        """The answer's text, with control characters escaped (``\x1b``), so that ``print(result)``
        cannot drive the terminal; ``result.text`` is the exact text."""
        from .display.common import printable

        return printable(self.text)

    def __repr__(self) -> str:
        shown = self.text if self.output_type is None else repr(self.output)
        shown = shown if len(shown) <= 60 else shown[:57] + "..."
        return (f"RunResult(status={self.status!r}, output={shown if self.output_type else repr(shown)}, "
                f"turns={self.turns}, run_id={self.run_id!r})")

    # -- notebook display (strings only: the kernel never imports IPython) ------------------------

    def to_text(self) -> str:
        """A deterministic plain-text rendering: no ids, no timestamps."""
        from .display.run import result_text

        return result_text(self)

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(self.to_text())

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> tuple[dict[str, str], dict[str, Any]]:
        from .display.run import result_html

        data = {"text/plain": self.to_text(), "text/html": result_html(self)}
        return data, {"loom": self.provenance()}

    def provenance(self) -> dict[str, Any]:
        """Run id, model and usage: written into a notebook output's metadata."""
        return {"run_id": self.run_id, "session_id": self.session_id, "agent": self.agent,
                "model": self.model, "status": self.status, "usage": self.usage.to_dict()}

