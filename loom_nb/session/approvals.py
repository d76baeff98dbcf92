"""A session's decisions on its paused run, from code, and the approvals it remembers.

``session.approve`` / ``reject`` / ``answer`` decide calls of the run the session waits on, on
one shared :class:`~loom_nb.result.RunResult` (so that a button, a magic and code add to the same
decisions), and resume the run once every waiting call is decided.

``approve(..., remember=True)`` allows the call's tool for the rest of the session: governance
then treats the tool's calls as approved (an ``ask`` is satisfied, a ``deny`` still wins). The
remembered tools are kept in the store's feedback log as ``approval`` records (``remember`` /
``forget``), append-only like the rest of the store, so a session opened again (in another
process too) keeps them, and :meth:`SessionApprovals.forget_approval` undoes one.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Literal

from .. import _bridge
from ..errors import ConfigError
from ..feedback import FeedbackRecord
from ..result import PendingApproval, RunResult

if TYPE_CHECKING:
    from ..agent import Agent
    from ..store import SessionStore

__all__ = ["SessionApprovals", "remembered_tools"]


def remembered_tools(records: Iterable[FeedbackRecord]) -> set[str]:
    """The tools allowed for the session, replaying its ``approval`` records in order."""
    tools: set[str] = set()
    for record in records:
        if record.kind == "approval":
            tool, action = record.data.get("tool"), record.data.get("action")
            if action == "remember":
                tools.add(str(tool))
            elif action == "forget":
                tools.discard(str(tool))
    return tools


_KINDED: dict[type, bool] = {}  # store class -> whether its feedback() takes kind=


def _approval_records(store: SessionStore, session_id: str) -> list[FeedbackRecord]:
    """The session's ``approval`` records: a query of that kind where the store has one (the
    built-in stores), so that a session with many feedback records pays nothing per turn."""
    kinded = _KINDED.get(type(store))
    if kinded is None:
        kinded = _KINDED[type(store)] = "kind" in inspect.signature(store.feedback).parameters
    if kinded:
        return store.feedback(session_id, kind="approval")  # type: ignore[call-arg]
    return [r for r in store.feedback(session_id) if r.kind == "approval"]


class SessionApprovals:
    """Decisions and remembered approvals of a session (mixed into Session)."""

    agent: Agent
    id: str
    store: SessionStore
    _shared: RunResult | None
    _remembered_cache: tuple[str, frozenset[str]] | None
    _shared_lock: threading.Lock

    if TYPE_CHECKING:
        @property
        def waiting(self) -> list[RunResult]: ...  # see SessionRuns

    # -- remembered approvals ----------------------------------------------------------------------

    @property
    def remembered(self) -> frozenset[str]:
        """The tools a person allowed for the rest of this session (``approve(remember=True)``):
        their calls run without asking, unless a governance rule denies them. Read from the
        store, so a decision made through another session object or process counts too."""
        return frozenset(remembered_tools(_approval_records(self.store, self.id)))

    def remembered_in(self, run_id: str) -> frozenset[str]:
        """:attr:`remembered` as run ``run_id`` sees it: read from the store once per run, and
        again after a change made here. The engine asks only when governance would ask for a
        call, so a run that asks nothing reads nothing."""
        cached = self._remembered_cache
        if cached is None or cached[0] != run_id:
            cached = self._remembered_cache = (run_id, self.remembered)
        return cached[1]

    def remember_approval(self, tool: str, *, run_id: str | None = None,
                          call_id: str | None = None) -> None:
        """Allow ``tool`` for the rest of this session without asking (stored)."""
        self._approval_record(tool, "remember", run_id, call_id)

    def forget_approval(self, tool: str) -> None:
        """Undo a remembered approval: calls of ``tool`` ask again (the undo is stored too)."""
        if tool not in self.remembered:
            raise ConfigError(f"Session {self.id} remembers no approval for {tool!r}; it "
                              f"remembers {sorted(self.remembered) or 'none'}.")
        self._approval_record(tool, "forget", None, None)

    def _approval_record(self, tool: str, action: Literal["remember", "forget"],
                         run_id: str | None, call_id: str | None) -> None:
        if not isinstance(tool, str) or not tool:
            raise ConfigError("Name the tool by its name, e.g. session.forget_approval('send_email').")
        self.store.append_feedback(FeedbackRecord(
            session_id=self.id, run_id=run_id, kind="approval",
            data={"tool": tool, "action": action, "call_id": call_id}))
        self._remembered_cache = None

    # -- deciding the waiting run ------------------------------------------------------------------

    def waiting_result(self) -> RunResult | None:
        """The run this session waits on, as one shared RunResult that keeps the decisions made
        on it (by code, a button, ``%loom approve``) until it resumes; None when none waits."""
        with self._shared_lock:
            waiting = self.waiting
            if not waiting:
                self._shared = None
                return None
            fresh, cached = waiting[0], self._shared
            if cached is not None and cached.run_id == fresh.run_id and cached.pending == fresh.pending:
                return cached
            self._shared = fresh
            return fresh

    def _decided(self) -> RunResult:
        result = self.waiting_result()
        if result is None:
            raise ConfigError(f"No run in session {self.id} is waiting for a decision; there is "
                              f"nothing to approve, reject or answer.")
        return result

    async def approve(self, *calls: str | PendingApproval, args: dict[str, Any] | None = None,
                      remember: bool = False) -> RunResult:
        """Approve calls of the waiting run (see :meth:`RunResult.approve`); once every waiting
        call is decided the run resumes and its new result is returned, else the waiting one."""
        return await self._then_resume(self._decided().approve(*calls, args=args, remember=remember))

    async def reject(self, *calls: str | PendingApproval, reason: str = "") -> RunResult:
        """Reject calls (or questions) of the waiting run; resumes as :meth:`approve` does."""
        return await self._then_resume(self._decided().reject(*calls, reason=reason))

    async def answer(self, question: str | PendingApproval | None, text: str) -> RunResult:
        """Answer the model's question (its call id; None for the only one): ``text`` is the
        ``ask_user`` call's result. Resumes as :meth:`approve` does."""
        return await self._then_resume(self._decided().answer(question, text))

    def approve_sync(self, *calls: str | PendingApproval, args: dict[str, Any] | None = None,
                     remember: bool = False) -> RunResult:
        """:meth:`approve` from sync code (also inside a Jupyter cell)."""
        return _bridge.run_sync(self.approve(*calls, args=args, remember=remember))

    def reject_sync(self, *calls: str | PendingApproval, reason: str = "") -> RunResult:
        """:meth:`reject` from sync code."""
        return _bridge.run_sync(self.reject(*calls, reason=reason))

    def answer_sync(self, question: str | PendingApproval | None, text: str) -> RunResult:
        """:meth:`answer` from sync code."""
        return _bridge.run_sync(self.answer(question, text))

    async def _then_resume(self, result: RunResult) -> RunResult:
        return result if result.undecided else await result.resume()
