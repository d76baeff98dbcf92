"""Widgets that show what an agent sees and decides: context, budget, signals, traces (and
approvals, in :mod:`loom_nb.notebook.approvals`).

Each view takes a RunResult (that run) or a Session (all its runs) and is an object with a
``.widget`` (stock ipywidgets) and a ``_repr_mimebundle_`` that carries the widget, a static HTML
form and a deterministic plain-text form (no ids, no timestamps), so a saved notebook reads well
where widget state is absent (GitHub, nbviewer) and nbval can compare the text.

Views subscribe to their session: events arrive on loom_nb's background thread, where the view
redraws its widgets (ipywidgets 8 sends the new values from any thread). Redraws are throttled
(at most one per ``interval`` seconds, except for discrete steps such as a tool call), and off
when no frontend is attached (see :func:`~loom_nb.notebook.live.live_updates_enabled`); the
final state of a run is drawn in any case, when the run finishes.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import ipywidgets as widgets
from IPython import get_ipython

from .._compaction import transcript
from ..display import views as display
from ..display.common import BORDER, note_html, printable
from ..display.run import run_status
from ..errors import ConfigError, LoomError
from ..events import RunEvent, RunStartedData, SignalData, payload
from ..feedback import current_ratings
from ..result import RunResult
from ..session import Session
from .cells import adopt
from .live import live_updates_enabled

__all__ = ["BudgetView", "ContextView", "SignalsView", "TraceView", "View"]

#: Seconds between two redraws caused by a stream of events.
VIEW_INTERVAL = 0.2
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
# Steps a reader watches for: drawn at once, or at the end of the throttle interval when one
# was drawn less than an interval ago (never left for the next event).
_DISCRETE = frozenset({"tool.call", "tool.result", "governance.decision", "run.resumed",
                       "run.interrupted", "context.compacted", "context.renewed",
                       "quality.verdict", "delegation.started", "delegation.finished",
                       "run.started"})
# Steps that settle what a view shows: drawn even when live updates are off.
_SETTLING = frozenset({"run.finished", "signal.decision"})


def _resolve(source: Any) -> tuple[RunResult | None, Session | None]:
    if isinstance(source, RunResult):
        return source, source.session
    if isinstance(source, Session):
        return None, source
    raise ConfigError(f"A loom_nb view takes a RunResult or a Session, not a "
                      f"{type(source).__name__}: e.g. ContextView(result) or ContextView(session).")


class View:
    """The common machinery: the source, the event log, subscription, throttled redraws."""

    kind = "view"
    #: Event types that change this view (None: all of them).
    interesting: frozenset[str] | None = None

    def __init__(self, source: RunResult | Session, *, live: bool | None = None,
                 interval: float = VIEW_INTERVAL,
                 follow: Literal["cell", "session"] = "cell") -> None:
        if follow not in ("cell", "session"):
            raise ConfigError(f"follow={follow!r}: a view follows its 'cell' (it shows the state "
                              f"of the cell that displayed it) or the whole 'session'.")
        self.result, self.session = _resolve(source)
        self.run_id = self.result.run_id if self.result is not None else None
        self.live = live_updates_enabled(get_ipython()) if live is None else live
        self.interval = interval
        #: "cell": once a later cell starts, only runs still going then change the view.
        self.follow = follow
        #: The runs this view still follows once frozen (None: not frozen, it follows all).
        self._own: set[str] | None = None
        #: How many times the widgets were redrawn (tests count them).
        self.updates = 0
        self._lock = threading.RLock()
        self._events: list[RunEvent] = []
        self._seen: set[tuple[str, int, str]] = set()
        if self.result is not None:
            self._add_all(self.result.events)
        elif self.session is not None:
            self._add_all(self.session.events())
        self._last_draw = 0.0
        self._pending = False  # a redraw is scheduled at the end of the current interval
        self.widget = self._build()
        self._draw()
        self._unsubscribe = (self.session.subscribe(self._on_event)
                             if self.session is not None else None)

    # -- events ------------------------------------------------------------------------------------

    def _add_all(self, events: list[RunEvent]) -> None:
        for event in events:
            self._add(event)

    def _add(self, event: RunEvent) -> bool:
        key = (event.run_id, event.seq, event.type)
        if event.live_only or event.type == "signal.decision" or key in self._seen:
            return False
        self._seen.add(key)
        self._events.append(event)
        return True

    def _wants(self, event: RunEvent) -> bool:
        if self._own is not None:  # frozen: only the runs that were going, and their sub-runs
            if event.run_id in self._own:
                return self.run_id is None or event.run_id == self.run_id
            if event.parent_run_id is not None and event.parent_run_id in self._own:
                self._own.add(event.run_id)
                return self.run_id is None
            return False
        if self.run_id is not None and event.type != "signal.decision":
            return event.run_id == self.run_id
        return True

    def _on_event(self, event: RunEvent) -> None:
        """Called on loom_nb's thread for each event of the session."""
        with self._lock:
            if not self._wants(event):
                return
            self._add(event)
            self._observe(event)
        if self.interesting is not None and event.type not in self.interesting | _SETTLING:
            return
        now = time.monotonic()
        if event.type == "run.finished":
            self._after_step(self.refresh)
        elif event.type in _SETTLING:
            self.refresh()
        elif not self.live:
            return
        elif now - self._last_draw >= self.interval:
            self.refresh()
        elif event.type in _DISCRETE:
            self._redraw_at_interval_end(self._last_draw + self.interval - now)

    def _redraw_at_interval_end(self, wait: float) -> None:
        """A step (a tool call, a decision) inside the throttle interval is drawn once at its
        end, with every step that came meanwhile: 200 quick tool calls are a few redraws, not
        400, and each one a whole transcript (issue 25)."""
        if self._pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the run's loop: draw now
            self.refresh()
            return
        self._pending = True
        loop.call_later(max(wait, 0.0), self._trailing)

    def _trailing(self) -> None:
        self._pending = False
        self.refresh()

    @staticmethod
    def _after_step(callback: Any) -> None:
        """Call ``callback`` once the step that emitted the current event has finished.

        ``run.finished`` is emitted after the run's record (its status, a pause for approval)
        is saved, but before the run's last events reach the store and before the session lets
        go of the run (``session.active_run``, queued signals); a redraw at that moment would
        read the store's events and the session's state as they were mid-run. That bookkeeping
        runs in the same step of the run's task, so a callback scheduled on the loop now runs
        after it.
        """
        try:
            asyncio.get_running_loop().call_soon(callback)
        except RuntimeError:  # not on an event loop: nothing is pending
            callback()

    def _observe(self, event: RunEvent) -> None:
        """Hook for views that keep state from live-only events (deltas)."""

    def events(self) -> list[RunEvent]:
        with self._lock:
            return list(self._events)

    # -- the cell this view belongs to (see loom_nb.notebook.cells) -----------------------------------

    def freeze(self) -> None:
        """Stop taking in later cells' work: from now on only the runs still going change it.

        A view of one run (a RunResult) is that run's, wherever it goes on (a resumption in a
        later cell included), like the run's card: freezing leaves it as it is.
        """
        if self.follow != "cell" or self.session is None or self.result is not None:
            return
        with self._lock:
            active = self.session.active_run
            self._own = set(self.session.background) | ({active.run_id} if active else set())

    def follow_run(self, run_id: str) -> None:
        """Follow ``run_id`` although the view is frozen (a resumption this view started)."""
        with self._lock:
            if self._own is not None:
                self._own.add(run_id)

    def _displayed(self) -> None:
        """Called on each display: the view becomes the current cell's, up to date."""
        with self._lock:
            if self._own is not None:
                self._own = None
                self._add_all(self.result.events if self.result is not None
                              else self.session.events() if self.session is not None else [])
                self._draw()
        if self.follow == "cell":
            adopt(self, get_ipython())

    def close(self) -> None:
        """Stop following the session (the widgets stay as they are)."""
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # -- drawing -----------------------------------------------------------------------------------

    _syncing = False

    @contextlib.contextmanager
    def _sync(self) -> Iterator[None]:
        """Mark changes the view makes to its own controls, so their observers ignore them."""
        self._syncing = True
        try:
            yield
        finally:
            self._syncing = False

    def refresh(self) -> None:
        """Redraw the widgets from the current state (any thread)."""
        with self._lock:
            self._draw()
            self.updates += 1
            self._last_draw = time.monotonic()

    def _build(self) -> widgets.Widget:
        self._html = widgets.HTML()
        return widgets.VBox([self._html])

    def _draw(self) -> None:
        self._html.value = self.to_html()

    def to_text(self) -> str:
        raise NotImplementedError

    def to_html(self) -> str:
        raise NotImplementedError

    def provenance(self) -> dict[str, Any]:
        """What the output's metadata carries: the run's provenance, or the session's."""
        if self.result is not None:
            return self.result.provenance()
        session = self.session
        assert session is not None
        runs = session.runs
        return {"session_id": session.id, "agent": session.agent.name,
                "model": session.agent.model.identifier, "runs": len(runs),
                "last_run": runs[-1].run_id if runs else None}

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
        self._displayed()
        with self._lock:
            data: dict[str, Any] = {"text/plain": printable(self.to_text()),
                                    "text/html": self.to_html()}
        view = self.widget._repr_mimebundle_()
        if view and WIDGET_MIME in view:
            data[WIDGET_MIME] = view[WIDGET_MIME]
        return data, {"loom": self.provenance()}

    def __repr__(self) -> str:
        return self.to_text()


class ContextView(View):
    """The five partitions of a request, their tokens and share of the budget, and their content.

    For a RunResult: any request of the run (a dropdown picks it; default: the latest). For a
    Session: the latest request and the session's compactions and renewals.
    """

    kind = "context"
    interesting = frozenset({"model.request", "model.response", "context.compacted",
                             "context.renewed"})

    def _build(self) -> widgets.Widget:
        self._html = widgets.HTML()
        self._pick = widgets.Dropdown(description="request", options=[("latest", 0)], value=0,
                                      layout=widgets.Layout(width="360px"))
        self._pick.observe(lambda _: None if self._syncing else self.refresh(), names=["value"])
        children = [self._pick, self._html] if self.result is not None else [self._html]
        return widgets.VBox(children)

    def requests(self) -> list[display.RequestContext]:
        return display.context_requests(self.events())

    def _selected(self, requests: list[display.RequestContext]) -> int | None:
        value = self._pick.value if self.result is not None else 0
        return value if value and value <= len(requests) else None

    def _compactions(self) -> list[str] | None:
        if self.result is not None:
            return None
        return [display.compaction_text(e) for e in self.events()
                if e.type in ("context.compacted", "context.renewed")]

    def _history(self) -> str:
        if self.session is None or self.result is not None:
            return ""
        return transcript(self.session.messages)

    def _draw(self) -> None:
        requests = self.requests()
        if self.result is not None:
            options = [("latest", 0)] + [(f"{r.number}: run {r.run}, turn {r.turn} · {r.total} "
                                          f"tokens", r.number) for r in requests]
            if list(self._pick.options) != options:
                value = self._pick.value
                with self._sync():
                    self._pick.options = options
                    self._pick.value = value if value <= len(requests) else 0
        self._html.value = display.context_html(requests, self._selected(requests),
                                               self._compactions(), self._history())

    def to_text(self) -> str:
        requests = self.requests()
        return display.context_text(requests, self._selected(requests), self._compactions())

    def to_html(self) -> str:
        requests = self.requests()
        return display.context_html(requests, self._selected(requests), self._compactions(),
                                   self._history())


class BudgetView(View):
    """Tokens used vs available for the latest request, and for every request."""

    kind = "budget"
    interesting = frozenset({"model.request", "model.response", "context.compacted",
                             "context.renewed"})

    def _compact_at(self) -> float | None:
        return self.session.agent.runtime.context.compact_at if self.session is not None else None

    def to_text(self) -> str:
        return display.budget_text(display.context_requests(self.events()), self._compact_at())

    def to_html(self) -> str:
        return display.budget_html(display.context_requests(self.events()), self._compact_at())


class SignalsView(View):
    """Every signal with its decision and reason; queued and interrupting runs marked."""

    kind = "signals"
    interesting = frozenset({"run.started", "run.interrupted", "run.finished"})
    _signals_seen: int | None = None

    def freeze(self) -> None:
        super().freeze()
        if self._own is not None and self.session is not None:
            self._signals_seen = len(self.session.signals)

    def _displayed(self) -> None:
        self._signals_seen = None
        super()._displayed()

    def rows(self) -> list[display.SignalRow]:
        session = self.session
        if session is None:
            return []
        records = session.signals
        if self._signals_seen is not None:  # frozen: later cells' signals are theirs
            records = records[:self._signals_seen]
        if self.run_id is not None:
            records = [r for r in records if r.run_id == self.run_id]
        runs = {r.run_id: (i, r.status) for i, r in enumerate(session.runs, 1)}
        queued = {s.id for s in session.inbox.queued}
        active = session.active_run.run_id if session.active_run is not None else None
        return [display.SignalRow(
            number=n, source=str(r.signal.get("source", "")), type=str(r.signal.get("type", "")),
            urgency=str(r.signal.get("urgency", "")), summary=str(r.signal.get("summary", "")),
            action=r.action, reason=r.reason,
            outcome=self._outcome(r.action, r.run_id, r.signal.get("id"), runs, queued, active))
            for n, r in enumerate(records, 1)]

    def _outcome(self, action: str, run_id: str | None, signal_id: Any,
                 runs: dict[str, tuple[int, str]], queued: set[str], active: str | None) -> str:
        if action == "observe":
            return "kept for the next run"
        if action not in ("queue", "interrupt") or run_id is None:
            return ""
        if signal_id in queued:
            return "queued"
        if run_id not in runs:
            return "starting"
        number, status = runs[run_id]
        assert self.session is not None
        first = self.session.store.events(run_id=run_id)[:1]
        signal: Mapping[str, Any] = (payload(first[0], RunStartedData).get("signal") or {}
                                     if first else {})
        own = bool(first) and signal.get("id") == signal_id
        if run_id == active:
            return f"running as run {number}" if own else f"interrupting run {number}"
        return f"ran as run {number} ({status})" if own else f"interrupted run {number} ({status})"

    def _queued(self) -> list[SignalData]:
        if self.session is None:
            return []
        queued = self.session.inbox.queued
        if self._signals_seen is not None:  # frozen: only the signals its cell had received
            known = {r.signal.get("id") for r in self.session.signals[:self._signals_seen]}
            queued = [s for s in queued if s.id in known]
        return [s.to_dict() for s in queued]

    def to_text(self) -> str:
        return display.signals_text(self.rows(), self._queued())

    def to_html(self) -> str:
        return display.signals_html(self.rows(), self._queued())


class TraceView(View):
    """A run's timeline (nested sub-runs indented), quality verdicts, and a 1-5 rating control.

    For a Session, a dropdown picks the run (default: the latest, following new runs).
    """

    kind = "trace"

    def __init__(self, source: RunResult | Session, run_id: str | None = None,
                 **options: Any) -> None:
        self._chosen = run_id
        self.note = ""
        super().__init__(source, **options)
        if run_id is not None and self.session is not None:
            if all(r.run_id != run_id for r in self.session.runs):
                raise ConfigError(f"Session {self.session.id} has no run {run_id!r}; "
                                  f"session.runs lists its runs.")

    def _build(self) -> widgets.Widget:
        self._html = widgets.HTML()
        self._pick = widgets.Dropdown(description="run", layout=widgets.Layout(width="460px"))
        self._pick.observe(lambda change: self._picked(change["new"]), names=["value"])
        self._scores = [widgets.Button(description=str(n), layout=widgets.Layout(width="40px"),
                                       tooltip=f"rate this run {n} of 5") for n in range(1, 6)]
        for n, button in enumerate(self._scores, 1):
            button.on_click(lambda _, n=n: self._rate_click(n))
        self._comment = widgets.Text(placeholder="comment (optional)",
                                     layout=widgets.Layout(width="320px"))
        self._status = widgets.HTML()
        rating = widgets.HBox([widgets.HTML(display.RATE_HTML), *self._scores,
                               self._comment])
        top = [self._pick] if self.result is None else []
        # One card holds the picker, the timeline, the rating row and the note.
        return widgets.VBox([*top, self._html, rating, self._status], layout=widgets.Layout(
            border=f"1px solid {BORDER}", padding="8px 12px", margin="4px 0", max_width="900px"))

    def _picked(self, value: str | None) -> None:
        if not self._syncing and value and value != self.selected_run():
            self._chosen = value
            self.refresh()

    def _top_runs(self) -> list[str]:
        return list(dict.fromkeys(e.run_id for e in self.events() if e.parent_run_id is None))

    def selected_run(self) -> str | None:
        if self.run_id is not None:
            return self.run_id
        runs = self._top_runs()
        return self._chosen if self._chosen in runs else (runs[-1] if runs else None)

    def rate(self, score: int, comment: str = "") -> None:
        """Rate the selected run (writes through ``session.feedback``)."""
        run_id = self.selected_run()
        if self.session is None or run_id is None:
            raise ConfigError("There is no run to rate yet.")
        before = self._rating(run_id)
        self.session.feedback(run_id, score, comment)
        again = f" (was {before['score']:g})" if before is not None else ""
        self.note = f"Rated {score} of 5{again}."

    def _rating(self, run_id: str) -> dict[str, Any] | None:
        """The run's rating: its newest (rating again replaces it)."""
        if self.session is None:
            return None
        current = current_ratings(self.session.feedback_records).get((self.session.id, run_id))
        return current.data if current is not None else None

    def _rate_click(self, score: int) -> None:
        try:
            self.rate(score, self._comment.value.strip())
            self._comment.value = ""
        except LoomError as exc:
            self.note = str(exc)
        self.refresh()

    def _state(self) -> tuple[str, list[display.TraceRow], list[dict[str, Any]] | None]:
        run_id = self.selected_run()
        if run_id is None:
            return "no run yet", [], None
        events = [e for e in self.events() if e.run_id == run_id]
        store = self.session.store if self.session is not None else None
        children = (lambda rid: store.events(run_id=rid)) if store is not None else None
        rows = display.trace_rows(events, children)
        status = run_status(events)
        runs = self._top_runs() if self.result is None else [run_id]
        position = f"run {runs.index(run_id) + 1} of {len(runs)} · " if self.result is None else ""
        ratings = None
        if self.session is not None:
            rating = self._rating(run_id)
            ratings = [rating] if rating is not None else []
        return f"{position}{status}", rows, ratings

    def _draw(self) -> None:
        if self.result is None:
            options = []
            for number, run_id in enumerate(self._top_runs(), 1):
                first = next(e for e in self.events() if e.run_id == run_id)
                started = payload(first, RunStartedData) if first.type == "run.started" else None
                prompt = str(started.get("prompt", ""))[:50] if started is not None else ""
                options.append((f"run {number}: {prompt}", run_id))
            with self._sync():
                if list(self._pick.options) != options:
                    self._pick.options = options
                if options and self._pick.value != self.selected_run():
                    self._pick.value = self.selected_run()
        title, rows, ratings = self._state()
        self._html.value = display.trace_html(title, rows, ratings, framed=False)
        self._status.value = note_html(self.note)
        chosen = ratings[0].get("score") if ratings else None
        for n, button in enumerate(self._scores, 1):  # the run's rating stays pressed
            button.button_style = "info" if chosen == n else ""

    def to_text(self) -> str:
        return display.trace_text(*self._state())

    def to_html(self) -> str:
        return display.trace_html(*self._state())
