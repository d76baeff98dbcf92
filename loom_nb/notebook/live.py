"""The live display of a run in a cell: one display, updated as the run goes, then the final render.

A run started from a cell gets one ``display(..., display_id=True)`` output. While the run goes,
the bridge thread redraws it from the run's events, throttled: at most once every ``interval``
seconds, a tool step as much as streamed text. An event inside the interval is drawn by one
redraw at the interval's end, so the display is never left behind a step while a tool works.
The card keeps only its latest steps rendered (:class:`~loom_nb.display.run.LiveCard`), so a
redraw costs the same at the 500th tool call as at the first. When the run ends, the same output is replaced by
the RunResult's own mimebundle, whose ``text/plain`` is deterministic and whose metadata carries
the run's provenance; a saved notebook therefore holds exactly one output per run, the final one.

Live updates are ``update_display_data`` messages. Tools that only record the first
``display_data`` of an output (nbval does) would see the placeholder instead of the final render,
so live updates can be turned off: ``LOOM_LIVE=0`` (or ``--no-stream``) shows one final display
and nothing before it. Without ``LOOM_LIVE``, updates are on in a Jupyter kernel and off in a
terminal IPython, which would print every update.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from IPython.display import DisplayHandle, display

from ..display.run import LiveCard, LiveText, MimeBundle, note_card
from ..events import ModelDeltaData, RunEvent, payload
from ..result import RunResult

__all__ = ["LiveDisplay", "live_updates_enabled", "redraw_paused_card"]

#: Seconds between two redraws, whatever caused them (streamed text or a tool step): at most
#: ~6.7 updates a second however fast the run goes.
UPDATE_INTERVAL = 0.15


def live_updates_enabled(shell: Any, requested: bool = True) -> bool:
    """Whether a run in ``shell`` should redraw its display while it goes.

    ``LOOM_LIVE=0`` turns updates off and ``LOOM_LIVE=1`` on; otherwise they are on in a Jupyter
    kernel only (a kernel shell has a ``kernel``; a terminal shell would print each update).
    """
    if not requested:
        return False
    setting = os.environ.get("LOOM_LIVE", "").strip().lower()
    if setting in {"0", "false", "no", "off"}:
        return False
    if setting in {"1", "true", "yes", "on"}:
        return True
    return getattr(shell, "kernel", None) is not None


class LiveDisplay:
    """One run's output in a cell.

    :meth:`start` and :meth:`finish` are called from the cell's thread; :meth:`on_event` from the
    loop thread that runs the agent (it is a subscriber of the run's event stream).
    """

    def __init__(self, prompt: str, *, agent: str, model: str, live: bool,
                 interval: float = UPDATE_INTERVAL) -> None:
        self.prompt = prompt
        self.agent = agent
        self.model = model
        self.live = live
        self.interval = interval
        self.updates = 0
        #: The RunResult drawn last (a cancelled run's too, so ``-o`` can bind it).
        self.result: RunResult | None = None
        self._live = LiveText()
        self._card = LiveCard(prompt, agent=agent, model=model)
        self._handle: DisplayHandle | None = None
        self._last_draw = 0.0
        self._pending = False  # a redraw is scheduled at the end of the current interval
        self._lock = threading.Lock()
        self._closed = False

    # -- cell thread -------------------------------------------------------------------------------

    def start(self) -> None:
        """Show the placeholder the live updates will redraw (nothing when updates are off)."""
        if self.live:
            data = self._live_bundle()
            self._handle = display(data, raw=True, display_id=True)
            self._last_draw = time.monotonic()

    def finish(self, result: RunResult | None, note: str = "") -> None:
        """Replace the live output with the final render (or show it, when updates were off)."""
        with self._lock:
            self._closed = True
        self.result = result
        if result is not None:
            data, metadata = result._repr_mimebundle_()
        else:
            data, metadata = self._note_bundle(note), {}
        if self._handle is not None:
            self._handle.update(data, raw=True, metadata=metadata)
        else:
            self._handle = display(data, raw=True, metadata=metadata, display_id=True)
        if result is not None and result.status == "needs_approval":
            with _PAUSED_LOCK:
                _PAUSED[result.run_id] = self


    # -- loop thread -------------------------------------------------------------------------------

    def on_event(self, event: RunEvent) -> None:
        """Record one event of the run and redraw when it is time to."""
        if event.type == "model.delta":
            self._live.add(payload(event, ModelDeltaData))
        elif not event.live_only:  # output.partial: the answer's text streams as deltas too
            self._card.add(event)
            if event.type in {"model.response", "tool.call", "model.fallback"}:
                # The stored event now holds what the deltas spelled out (or, after a
                # fallback, the next model answers the turn from the start).
                self._live = LiveText()
        # run.finished is not drawn: the final render replaces the display right after it.
        if not self.live or self._pending or event.type == "run.finished":
            return
        now = time.monotonic()
        wait = self._last_draw + self.interval - now
        if wait <= 0:
            self._redraw()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the run's loop: the next event or the final render draws
            return
        self._pending = True
        loop.call_later(wait, self._trailing)

    def _trailing(self) -> None:
        self._pending = False
        self._redraw()

    def _redraw(self) -> None:
        with self._lock:
            if self._closed or self._handle is None:
                return
            self._handle.update(self._live_bundle(), raw=True)
            self._last_draw = time.monotonic()
            self.updates += 1

    # -- renderings --------------------------------------------------------------------------------

    def _live_bundle(self) -> MimeBundle:
        return self._card.bundle(self._live.text)

    def _note_bundle(self, note: str) -> MimeBundle:
        return note_card(self.prompt, note)


# A paused run's card, by run id: when the run resumes from a view (a button, %loom approve),
# the card in the cell that started it is redrawn with the resumed run's result.
_PAUSED: dict[str, LiveDisplay] = {}
_PAUSED_LOCK = threading.Lock()


def redraw_paused_card(result: RunResult) -> bool:
    """Redraw the card of the run ``result`` resumed (any thread); False when none is shown."""
    with _PAUSED_LOCK:
        shown = _PAUSED.get(result.run_id)
        if shown is not None and result.status != "needs_approval":
            del _PAUSED[result.run_id]
    if shown is None or shown._handle is None:
        return False
    data, metadata = result._repr_mimebundle_()
    shown.result = result
    shown._handle.update(data, raw=True, metadata=metadata)
    return True
