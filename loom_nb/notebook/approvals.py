"""The approvals view: governance decisions with their reasons, and Approve / Reject buttons.

A view like the others in :mod:`loom_nb.notebook.views`; apart because it also acts: a click
decides a call and resumes the run on loom_nb's background loop. Under each waiting call: a
"remember" checkbox (allow the tool for the rest of the session) and "Edit arguments", a JSON
text area prefilled with the call's arguments that Approve then runs with; a question of the
model (``Capability.ask_user()``) shows its text with an answer box instead. The tools the
session remembers are listed with a Forget button each.
"""

from __future__ import annotations

import concurrent.futures
import json
import threading
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
    """The session's run that waits for approval, as one shared RunResult (None if none): the
    session's own (see ``Session.waiting_result``), so that code, buttons and magics add to the
    same decisions."""
    return session.waiting_result()


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
        self._controls: dict[str, _CallControls] = {}
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
               reason: str = "", args: dict[str, Any] | None = None,
               remember: bool = False) -> concurrent.futures.Future[RunResult] | None:
        """Approve or reject waiting calls (all when none are named; ``args``: one call's edited
        arguments; ``remember``: allow the tools for the session); resume when all are decided.

        Returns the resumption's future, or None when some calls still wait for a decision.
        """
        result = self._deciding()
        if approve:
            result.approve(*call_ids, args=args, remember=remember)
        else:
            result.reject(*call_ids, reason=reason or "rejected in the notebook")
        return self._resume_if_decided(result)

    def answer(self, question: str | None, text: str) -> concurrent.futures.Future[RunResult] | None:
        """Answer the model's question (None: the only one); resume when all are decided."""
        result = self._deciding()
        result.answer(question, text)
        return self._resume_if_decided(result)

    def forget(self, tool: str) -> None:
        """Undo the session's remembered approval of ``tool``."""
        if self.session is None:
            raise ConfigError("This view shows a RunResult, not a session: nothing is remembered.")
        self.session.forget_approval(tool)
        self.note = f"{tool} asks again before it runs."
        self.refresh()

    def _deciding(self) -> RunResult:
        result = self.waiting()
        if result is None:
            raise ConfigError("No run is waiting for approval here; there is nothing to decide.")
        if result.session is None:
            raise ConfigError("This RunResult has no session to resume in; use session.resume().")
        return result

    def _resume_if_decided(self, result: RunResult) -> concurrent.futures.Future[RunResult] | None:
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

    def _click(self, call_id: str, approve: bool, controls: _CallControls | None = None) -> None:
        try:
            if controls is not None and controls.question is not None and approve:
                self.answer(call_id, controls.question.value)
                return
            args = controls.edited_args() if controls is not None and approve else None
            self.decide([call_id], approve=approve, reason=self._reason.value.strip(), args=args,
                        remember=bool(controls and controls.remember and controls.remember.value))
        except LoomError as exc:  # a widget callback's errors would otherwise vanish
            self.note = str(exc)
            self.refresh()

    def _forget_click(self, tool: str) -> None:
        try:
            self.forget(tool)
        except LoomError as exc:
            self.note = str(exc)
            self.refresh()

    def remembered(self) -> frozenset[str]:
        return self.session.remembered if self.session is not None else frozenset()

    def _draw(self) -> None:
        # The waiting calls are counted in the header; their buttons below stand for the list.
        remembered = self.remembered()
        self._html.value = display.approvals_html(display.governance_rows(self.events()),
                                                  self.pending(), list_pending=False,
                                                  remembered=remembered)
        rows: list[widgets.Widget] = []
        kept, self._controls = self._controls, {}
        for call in self.pending():
            # Kept across redraws: a refused edit (bad JSON) stays in its box to be fixed.
            controls = kept.get(call.call_id)
            if controls is None or controls.call != call:
                controls = _CallControls(call)
            self._controls[call.call_id] = controls
            question = call.kind == "question"
            approve = widgets.Button(description="Answer" if question else "Approve",
                                     button_style="success", icon="check",
                                     layout=widgets.Layout(width="110px"))
            reject = widgets.Button(description="Decline" if question else "Reject",
                                    button_style="danger", icon="times",
                                    layout=widgets.Layout(width="110px"))
            approve.on_click(lambda _, c=call.call_id, k=controls: self._click(c, True, k))
            reject.on_click(lambda _, c=call.call_id: self._click(c, False))
            label = widgets.HTML(display.pending_call_html(call.name, call.args, call.reason)
                                 if not question else display.question_html(call.question or ""))
            # The buttons' row stays first (and an HBox), its controls right under it.
            rows += [widgets.HBox([approve, reject, label]), controls.box]
        forget = [widgets.Button(description=f"Forget {tool}", icon="undo",
                                 tooltip=f"{tool} asks again before it runs",
                                 layout=widgets.Layout(width="auto")) for tool in sorted(remembered)]
        for button, tool in zip(forget, sorted(remembered)):
            button.on_click(lambda _, t=tool: self._forget_click(t))
        self._pending_box.children = (([widgets.HTML(display.WAITING_HTML), *rows, self._reason]
                                       if rows else []) + ([widgets.HBox(forget)] if forget else []))
        self._status.value = note_html(self.note, "div")
        self._answer.value = result_html(self.resumed) if self.resumed is not None else ""

    def to_text(self) -> str:
        text = display.approvals_text(display.governance_rows(self.events()), self.pending(),
                                      self.note, self.remembered())
        return text + (f"\n{self.resumed.to_text()}" if self.resumed is not None else "")

    def to_html(self) -> str:
        markup = display.approvals_html(display.governance_rows(self.events()), self.pending(),
                                        self.note, remembered=self.remembered())
        return markup + (result_html(self.resumed) if self.resumed is not None else "")


class _CallControls:
    """The controls under one waiting call: for a call, the "remember" checkbox and the edit
    area (hidden until "Edit arguments" is pressed); for a question, the answer box."""

    def __init__(self, call: PendingApproval) -> None:
        self.call = call
        self.remember: widgets.Checkbox | None = None
        self.edit: widgets.Textarea | None = None
        self.question: widgets.Textarea | None = None
        if call.kind == "question":
            self.question = widgets.Textarea(placeholder="your answer (the model receives it)",
                                             layout=widgets.Layout(width="520px", height="60px"))
            self.box = widgets.HBox([self.question])
            return
        self.remember = widgets.Checkbox(value=False, indent=False,
                                         description=f"remember: allow {call.name} for this session")
        self.shown = json.dumps(call.args, indent=2, ensure_ascii=False)
        self.edit = widgets.Textarea(value=self.shown, layout=widgets.Layout(
            width="520px", height="90px", display="none"))
        toggle = widgets.ToggleButton(value=False, description="Edit arguments", icon="pencil",
                                      layout=widgets.Layout(width="150px"))
        toggle.observe(self._toggled, names="value")
        self.box = widgets.VBox([widgets.HBox([toggle, self.remember]), self.edit])

    def _toggled(self, change: dict[str, Any]) -> None:
        assert self.edit is not None
        self.edit.layout.display = "" if change["new"] else "none"

    def edited_args(self) -> dict[str, Any] | None:
        """The arguments in the edit area when they differ from the call's; ConfigError when
        they are not a JSON object."""
        if self.edit is None or self.edit.value.strip() == self.shown.strip():
            return None
        try:
            args = json.loads(self.edit.value)
        except ValueError as exc:
            raise ConfigError(f"The edited arguments of {self.call.name} are not JSON ({exc}); "
                              f"fix them and approve again.") from None
        if not isinstance(args, dict):
            raise ConfigError(f"The edited arguments of {self.call.name} must be a JSON object, "
                              f"such as {self.shown}.")
        return None if args == self.call.args else args
