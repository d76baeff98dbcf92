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

__all__ = ["Approved", "Decision", "PendingApproval", "PendingKind", "RunError", "RunResult",
           "RunStatus", "ToolCallRecord", "is_approved"]

#: ``interrupted``: the process running it ended first (see Session.runs); never set by a live run.
RunStatus: TypeAlias = Literal["completed", "failed", "cancelled", "needs_approval", "limit",
                               "interrupted"]


#: One tool call of a run and its outcome, read from the run's events (see events.tool_calls).
#: (A plain alias, not ``ToolCallTrace[RunEvent]``, so that ``isinstance`` works with it.)
ToolCallRecord = ToolCallTrace


#: ``approval``: a call waiting for yes or no; ``question``: the model asks the person
#: (``Capability.ask_user()``), answered with ``answer(call_id, text)``.
PendingKind: TypeAlias = Literal["approval", "question"]


@dataclass(frozen=True, kw_only=True)
class PendingApproval:
    """A tool call waiting for a person's decision, or (``kind="question"``) for their answer.

    A call a sub-agent made has ``via`` set: the id of the calling run's ``delegate`` call. Its
    ``call_id`` is then ``"<via>/<the sub-agent's call id>"``, unique in the calling run.
    """

    call_id: str
    name: str
    args: dict[str, Any]
    reason: str
    via: str | None = None
    kind: PendingKind = "approval"

    @property
    def question(self) -> str | None:
        """For ``kind="question"``: what the model asks the person."""
        return str(self.args.get("question", "")) if self.kind == "question" else None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, kw_only=True)
class Approved:
    """A person's yes to a waiting call, with what they added: ``args`` (the arguments to run
    it with instead of the model's), ``remember`` (allow the tool for the rest of the session
    without asking) or ``answer`` (the answer to a question, which becomes the call's result)."""

    args: dict[str, Any] | None = None
    remember: bool = False
    answer: str | None = None


#: A decision on one waiting call: None (approved as shown), an :class:`Approved` (approved with
#: edits, remembered, or answered) or a str (rejected, with the reason the model is told).
Decision: TypeAlias = "Approved | str | None"


def is_approved(decision: Decision) -> bool:
    return decision is None or isinstance(decision, Approved)


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
    _decisions: dict[str, Decision] = field(default_factory=dict, compare=False)

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

    def approve(self, *calls: str | PendingApproval, args: dict[str, Any] | None = None,
                remember: bool = False) -> RunResult:
        """Approve waiting calls, by id or as the :class:`PendingApproval` shown (all of them when
        none is given; questions are answered with :meth:`answer` instead); then :meth:`resume`.

        ``args`` (with exactly one call named) runs the call with these arguments instead of the
        model's: they are checked against the tool's schema now when the tools are known, and
        again before the run resumes (a bad edit is a ConfigError and the run still waits).
        ``remember=True`` also allows each approved call's tool for the rest of the session
        (``session.remembered``; undo with ``session.forget_approval(tool)``).

        An approval binds to the call's id, tool and arguments as shown here: if the run waits
        on anything else under that id when it resumes, nothing runs and
        :class:`~loom_nb.errors.ApprovalMismatchError` says so."""
        call_ids = self._waiting(calls)
        if args is not None and (len(calls) != 1):
            raise ConfigError(f"approve(args=...) edits one call: name it, e.g. "
                              f"result.approve({call_ids[0]!r}, args={{...}}).")
        waiting = {p.call_id: p for p in self.pending}
        questions = [c for c in call_ids if waiting[c].kind == "question"]
        if questions and calls:
            raise ConfigError(f"{questions} {'is a question' if len(questions) == 1 else 'are questions'}"
                              f" of the model: answer with result.answer({questions[0]!r}, text), "
                              f"or reject it.")
        call_ids = [c for c in call_ids if c not in questions]
        if not call_ids:
            raise ConfigError(f"Run {self.run_id} waits only on questions of the model "
                              f"{questions}: answer each with result.answer(call_id, text), or "
                              f"reject it.")
        if args is not None:
            from .decisions import edited_args

            agent = self.session.agent if self.session is not None else None
            args = edited_args(agent.tools if agent is not None and agent._resolved else None,
                               waiting[call_ids[0]], args, self.run_id)
        if remember:
            from .decisions import check_rememberable

            for call_id in call_ids:
                check_rememberable(waiting[call_id], self.run_id)
        for call_id in call_ids:
            self._decisions[call_id] = (Approved(args=args, remember=remember)
                                        if args is not None or remember else None)
        return self

    def answer(self, question: str | PendingApproval | None, text: str) -> RunResult:
        """Answer the model's question (``Capability.ask_user()``; its call id, or None for the
        only question waiting): ``text`` becomes the tool's result; then :meth:`resume`."""
        asked = [p for p in self.pending if p.kind == "question"]
        if question is None:
            if self.status == "needs_approval" and len(asked) != 1:
                raise ConfigError(f"Run {self.run_id} waits on {len(asked)} questions "
                                  f"{[p.call_id for p in asked]}: name the one you answer.")
            question = asked[0].call_id if asked else ""
        call_id = self._waiting((question,))[0]
        if not isinstance(text, str) or not text.strip():
            raise ConfigError("answer(..., text) takes the answer as a non-empty str.")
        if call_id not in {p.call_id for p in asked}:
            raise ConfigError(f"{call_id!r} in run {self.run_id} is a tool call waiting for "
                              f"approval, not a question: use approve() or reject().")
        self._decisions[call_id] = Approved(answer=text)
        return self

    def reject(self, *calls: str | PendingApproval, reason: str = "") -> RunResult:
        """Reject waiting calls (all when none is given); the model is told ``reason``. A
        rejected question tells the model that the person declined to answer."""
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

