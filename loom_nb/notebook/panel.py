"""SessionPanel: talk to a session from a widget, and watch what it sees and decides.

A prompt box with Send and Stop, the live transcript of the session's runs (streamed text, tool
calls with their arguments and results, long results collapsed), and the views of
:mod:`loom_nb.notebook.views` in tabs. Send starts the run in the background
(``session.start``), so the cell is free and the buttons stay responsive; Stop cancels it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import ipywidgets as widgets

from .. import _bridge
from ..agent import Agent
from ..display.common import note_html, view_card
from ..display.run import (LiveText, panel_header_html, panel_run_html, panel_text,
                           panel_transcript, status_sentence)
from ..errors import ConfigError, LoomError
from ..events import ModelDeltaData, RunEvent, payload
from ..result import RunResult
from ..session import Run, Session
from .approvals import ApprovalsView
from .views import BudgetView, ContextView, SignalsView, TraceView, View

__all__ = ["SessionPanel"]

TABS = ("Context", "Budget", "Signals", "Approvals", "Trace")


class SessionPanel(View):
    """The session panel; ``SessionPanel(session)`` or ``SessionPanel(agent)`` (a new session).

    Attributes:
        views: the tab views, by name (``context``, ``budget``, ``signals``, ``approvals``,
            ``trace``).
        run: the run started last with Send (a :class:`~loom_nb.session.Run`), if any.
        future: resolves to that run's RunResult once it has ended.
    """

    kind = "panel"

    def __init__(self, source: Session | Agent, **options: Any) -> None:
        if isinstance(source, Agent):
            source = source.session()
        if not isinstance(source, Session):
            raise ConfigError(f"SessionPanel takes a Session (or an Agent), not a "
                              f"{type(source).__name__}: e.g. SessionPanel(agent.session()).")
        # The panel is the session's workspace (Send starts runs from it): it follows the whole
        # session, unlike a view, which shows the state of its own cell.
        options.setdefault("follow", "session")
        self.run: Run | None = None
        self.future: concurrent.futures.Future[RunResult] | None = None
        self.note = ""
        self._live_text: dict[str, LiveText] = {}  # by run id
        self._drawn: dict[str, tuple[tuple[int, int], str]] = {}  # finished runs' markup
        self.views: dict[str, View] = {
            "context": ContextView(source, **options), "budget": BudgetView(source, **options),
            "signals": SignalsView(source, **options),
            "approvals": ApprovalsView(source, **options), "trace": TraceView(source, **options)}
        super().__init__(source, **options)

    # -- widgets -----------------------------------------------------------------------------------

    def _build(self) -> widgets.Widget:
        session = self._session
        header = widgets.HTML(panel_header_html(session.id, session.agent.name,
                                                session.agent.model.identifier))
        # column-reverse: a scroll box anchored at its end, so the newest run and the text
        # streaming in stay in view, and a reader who scrolled up is not pulled down again.
        self._transcript = widgets.HTML(layout=widgets.Layout(
            max_height="420px", overflow="auto", flex_flow="column-reverse",
            border="1px solid var(--jp-border-color1, #d0d7de)", padding="4px 8px"))
        self.prompt = widgets.Textarea(placeholder="Ask the agent… (Send starts a run)",
                                       layout=widgets.Layout(flex="1 1 auto", width="auto",
                                                             min_width="0", height="64px"))
        self.send_button = widgets.Button(description="Send", button_style="primary",
                                          icon="paper-plane", layout=widgets.Layout(width="100px"))
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True,
                                          layout=widgets.Layout(width="100px"))
        self.send_button.on_click(lambda _: self._safely(self.send))
        self.stop_button.on_click(lambda _: self._safely(self.stop))
        self._status = widgets.HTML()
        self.tabs = widgets.Tab(children=[v.widget for v in self.views.values()], titles=TABS)
        buttons = widgets.VBox([self.send_button, self.stop_button],
                               layout=widgets.Layout(flex="none", overflow="hidden"))
        controls = widgets.HBox([self.prompt, buttons], layout=widgets.Layout(overflow="hidden"))
        left = widgets.VBox([header, self._transcript, controls, self._status],
                            layout=widgets.Layout(flex="1 1 55%", min_width="360px"))
        right = widgets.VBox([self.tabs], layout=widgets.Layout(flex="1 1 45%", min_width="360px"))
        return widgets.HBox([left, right], layout=widgets.Layout(flex_flow="row wrap",
                                                                 width="100%"))

    @property
    def _session(self) -> Session:
        assert self.session is not None
        return self.session

    def _safely(self, action: Any) -> None:
        # Errors in widget callbacks are swallowed by ipywidgets; show them in the panel instead.
        try:
            action()
        except LoomError as exc:
            self.note = str(exc)
            self.refresh()

    # -- actions -----------------------------------------------------------------------------------

    def send(self, prompt: str | None = None) -> Run:
        """Start a run on ``prompt`` (default: the prompt box) in the background."""
        text = (self.prompt.value if prompt is None else prompt).strip()
        if not text:
            raise ConfigError("Write a prompt in the box first.")
        if self.run is not None and not self.run.done():
            raise ConfigError("A run is going; wait for it or press Stop before sending another.")
        run = self._session.start(text)
        self.run, self.note = run, "Running…"
        self.prompt.value = ""
        self.send_button.disabled, self.stop_button.disabled = True, False
        self.future = _bridge.submit(run.wait())
        self.future.add_done_callback(self._ended)
        self.refresh()
        return run

    def stop(self) -> None:
        """Cancel the run started with Send; it records ``cancelled`` and the session stays usable."""
        if self.run is None or self.run.done():
            raise ConfigError("No run is going.")
        self.note = "Stopping…"
        self.run.cancel()
        self.refresh()

    def _ended(self, future: concurrent.futures.Future[RunResult]) -> None:
        self.send_button.disabled, self.stop_button.disabled = False, True
        if future.cancelled() or future.exception() is not None:
            self.note = f"The run failed: {future.exception() or 'cancelled'}"
        else:
            result = future.result()
            self.note = status_sentence(result.status, result.error)
            if result.status == "needs_approval":
                self.note += (" Decide the waiting calls in the Approvals tab (or with "
                              "%loom approve / %loom reject).")
                self.tabs.selected_index = TABS.index("Approvals")
        self.refresh()

    # -- events ------------------------------------------------------------------------------------

    def _observe(self, event: RunEvent) -> None:
        run = event.run_id
        if event.type == "model.delta":
            self._live_text.setdefault(run, LiveText()).add(payload(event, ModelDeltaData))
        elif event.live_only:
            return
        elif event.type in ("model.response", "tool.call", "run.finished", "model.fallback"):
            self._live_text.pop(run, None)  # the stored event now holds what the deltas spelled

    def _wants(self, event: RunEvent) -> bool:
        return event.parent_run_id is None

    def _runs(self) -> list[tuple[str, list[RunEvent]]]:
        runs: dict[str, list[RunEvent]] = {}
        for event in self.events():
            runs.setdefault(event.run_id, []).append(event)
        return list(runs.items())

    def _draw(self) -> None:
        self._transcript.value = self._transcript_html()
        self._status.value = note_html(self.note)

    def _transcript_html(self) -> str:
        parts = []
        for run_id, events in self._runs():
            live = self._live_text.get(run_id)
            if live is not None or events[-1].type != "run.finished":
                parts.append(panel_run_html(events, live.text if live else ""))
                continue
            # A finished run is drawn once: a redraw costs the run going on, not the session.
            key = (len(events), events[-1].seq)
            cached = self._drawn.get(run_id)
            if cached is None or cached[0] != key:
                cached = self._drawn[run_id] = (key, panel_run_html(events))
            parts.append(cached[1])
        return panel_transcript(parts)

    def to_text(self) -> str:
        return panel_text([events for _, events in self._runs()])

    def to_html(self) -> str:
        views = "".join(v.to_html() for v in self.views.values())
        return view_card("panel", f"Session panel · {len(self._runs())} runs",
                         self._transcript_html() + views)

    def close(self) -> None:
        super().close()
        for view in self.views.values():
            view.close()
