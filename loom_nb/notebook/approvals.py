"""The approvals view: governance decisions with their reasons, and Approve / Reject buttons.

A view like the others in :mod:`loom_nb.notebook.views`; apart because it also acts: a click
decides a call and resumes the run on loom_nb's background loop.
"""

from __future__ import annotations

import concurrent.futures
import threading
import weakref
from typing import Any

import ipywidgets as widgets

from .. import _bridge
from ..display import views as display
from ..display.common import note_html
from ..display.run import result_html, status_sentence
from ..errors import ConfigError, LoomError
from ..result import PendingApproval, RunResult
from ..session import Session
from .live import redraw_paused_card
from .views import View

__all__ = ["ApprovalsView", "bind_when_resumed", "waiting_result"]

# A session's paused run, kept as one RunResult object, so that decisions made in one place
# (a button, %loom approve) are seen by the next; RunResult keeps decisions until resume().
_WAITING: weakref.WeakKeyDictionary[Session, RunResult] = weakref.WeakKeyDictionary()
_WAITING_LOCK = threading.Lock()


# Variables that `%loom run -o NAME` bound to a paused run, by run id: when the notebook resumes
# the run (a button, %loom approve), NAME is rebound to the resumed run's result, unless the
# person has since given NAME another value. (From code, resume() returns the new result.)
_BOUND: dict[str, list[tuple[dict[str, Any], str, RunResult]]] = {}
_MAX_BOUND = 256


def bind_when_resumed(namespace: dict[str, Any], name: str, paused: RunResult) -> None:
    """Rebind ``namespace[name]`` (now ``paused``) to the result of its resumption."""
    with _WAITING_LOCK:
        _BOUND.setdefault(paused.run_id, []).append((namespace, name, paused))
        while len(_BOUND) > _MAX_BOUND:  # runs never decided: forget the oldest
            del _BOUND[next(iter(_BOUND))]


def _rebind(resumed: RunResult) -> list[str]:
    with _WAITING_LOCK:
        bound = _BOUND.pop(resumed.run_id, []) if resumed.status != "needs_approval" else []
    names = []
    for namespace, name, paused in bound:
        if namespace.get(name) is paused:
            namespace[name] = resumed
            names.append(name)
    return names


def waiting_result(session: Session) -> RunResult | None:
    """The session's run that waits for approval, as one shared RunResult (None if none)."""
    with _WAITING_LOCK:
        waiting = session.waiting
        if not waiting:
            _WAITING.pop(session, None)
            return None
        fresh, cached = waiting[0], _WAITING.get(session)
        if cached is not None and cached.run_id == fresh.run_id and cached.pending == fresh.pending:
            return cached
        _WAITING[session] = fresh
        return fresh


class ApprovalsView(View):
    """Governance decisions with their reasons, and Approve / Reject for calls that wait.

    A click decides the call; once every waiting call is decided, the run resumes on loom_nb's
    background loop (the cell is not blocked) and the view redraws when it has finished.
    ``future`` is the resumption in progress (a ``concurrent.futures.Future``).
    """

    kind = "approvals"
    interesting = frozenset({"governance.decision", "run.resumed", "tool.call"})

    def __init__(self, source: RunResult | Session, **options: Any) -> None:
        self.future: concurrent.futures.Future[RunResult] | None = None
        self.note = ""
        #: The result of the resumption started here, drawn under the buttons once it has ended.
        self.resumed: RunResult | None = None
        super().__init__(source, **options)

    def _build(self) -> widgets.Widget:
        self._html = widgets.HTML()
        self._reason = widgets.Text(placeholder="reason for a rejection (the model is told)",
                                    layout=widgets.Layout(width="420px"))
        self._pending_box = widgets.VBox()
        self._status = widgets.HTML()
        self._answer = widgets.HTML()
        return widgets.VBox([self._html, self._pending_box, self._status, self._answer])

    def waiting(self) -> RunResult | None:
        """The paused run this view decides on (None when nothing waits)."""
        if self.session is None:
            return self.result if self.result is not None and self.result.pending else None
        result = waiting_result(self.session)
        if result is not None and self.run_id is not None and result.run_id != self.run_id:
            return None
        return result

    def pending(self) -> list[PendingApproval]:
        if self.future is not None and not self.future.done():
            return []  # being resumed: nothing to decide now
        result = self.waiting()
        return result.undecided if result is not None else []

    def decide(self, call_ids: list[str] | tuple[str, ...] = (), *, approve: bool,
               reason: str = "") -> concurrent.futures.Future[RunResult] | None:
        """Approve or reject waiting calls (all when none are named); resume when all are decided.

        Returns the resumption's future, or None when some calls still wait for a decision.
        """
        result = self.waiting()
        if result is None:
            raise ConfigError("No run is waiting for approval here; there is nothing to decide.")
        if result.session is None:
            raise ConfigError("This RunResult has no session to resume in; use session.resume().")
        if approve:
            result.approve(*call_ids)
        else:
            result.reject(*call_ids, reason=reason or "rejected in the notebook")
        left = result.undecided
        if left:
            self.note = f"{len(left)} more call{'s' if len(left) != 1 else ''} to decide."
            self.refresh()
            return None
        self.note = "Resuming the run…"
        self.follow_run(result.run_id)  # a view frozen by later cells still shows its own click
        self.future = _bridge.submit(result.resume())
        self.refresh()
        self.future.add_done_callback(self._resumed)
        return self.future

    def _resumed(self, future: concurrent.futures.Future[RunResult]) -> None:
        if future.cancelled():
            self.note = "The resumption was cancelled."
        elif future.exception() is not None:
            exc = future.exception()
            self.note = f"Resuming failed: {type(exc).__name__}: {exc}"
        else:
            result = future.result()
            if self.result is not None:
                self.result = result
                self._add_all(result.events)
            self.resumed = result
            redrawn = redraw_paused_card(result)
            names = _rebind(result)
            self.note = "Resumed. " + status_sentence(result.status, result.error) + (
                " The run's card above shows it too." if redrawn else "") + (
                f" {', '.join(f'`{n}`' for n in names)} now "
                f"{'holds' if len(names) == 1 else 'hold'} the resumed run." if names else "")
        self.refresh()

    def _click(self, call_id: str, approve: bool) -> None:
        try:
            self.decide([call_id], approve=approve, reason=self._reason.value.strip())
        except LoomError as exc:  # a widget callback's errors would otherwise vanish
            self.note = str(exc)
            self.refresh()

    def _draw(self) -> None:
        # The waiting calls are counted in the header; their buttons below stand for the list.
        self._html.value = display.approvals_html(display.governance_rows(self.events()),
                                                  self.pending(), list_pending=False)
        rows: list[widgets.Widget] = []
        for call in self.pending():
            approve = widgets.Button(description="Approve", button_style="success", icon="check",
                                     layout=widgets.Layout(width="110px"))
            reject = widgets.Button(description="Reject", button_style="danger", icon="times",
                                    layout=widgets.Layout(width="110px"))
            approve.on_click(lambda _, c=call.call_id: self._click(c, True))
            reject.on_click(lambda _, c=call.call_id: self._click(c, False))
            label = widgets.HTML(display.pending_call_html(call.name, call.args, call.reason))
            rows.append(widgets.HBox([approve, reject, label]))
        self._pending_box.children = ([widgets.HTML(display.WAITING_HTML), *rows, self._reason]
                                      if rows else [])
        self._status.value = note_html(self.note, "div")
        self._answer.value = result_html(self.resumed) if self.resumed is not None else ""

    def to_text(self) -> str:
        text = display.approvals_text(display.governance_rows(self.events()), self.pending(),
                                      self.note)
        return text + (f"\n{self.resumed.to_text()}" if self.resumed is not None else "")

    def to_html(self) -> str:
        markup = display.approvals_html(display.governance_rows(self.events()), self.pending(),
                                        self.note)
        return markup + (result_html(self.resumed) if self.resumed is not None else "")
