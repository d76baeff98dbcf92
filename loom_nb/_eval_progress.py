"""The progress display of :func:`loom_nb.evaluate`: a widget in a notebook, lines on stderr
elsewhere. When the evaluation ends the widget's output is replaced by a static line with the
final count, so a saved notebook (GitHub, nbviewer) shows ``300/300``, not the ``0/300`` a
widget's text fallback held when it was first displayed."""

from __future__ import annotations

import html
import sys
import time
from typing import Any

__all__ = ["in_notebook", "make_progress"]


class _TextProgress:
    """Progress lines on stderr, at most one every ``every`` seconds, and a last one at the end."""

    def __init__(self, total: int, every: float = 2.0) -> None:
        self.total, self.every = total, every
        self.done = self.failed = self.resumed = 0
        self.started = self.last = time.monotonic()

    def advance(self, row: dict[str, Any]) -> None:
        self.done += 1
        self.failed += row.get("status") != "completed"
        self.resumed += bool(row.get("resumed"))
        now = time.monotonic()
        if now - self.last >= self.every:
            self.last = now
            self._print()

    def summary(self) -> str:
        return (f"{self.done}/{self.total} samples done ({self.resumed} from the store, "
                f"{self.failed} not completed), {time.monotonic() - self.started:.1f} s")

    def _print(self) -> None:
        print(f"evaluate: {self.summary()}", file=sys.stderr, flush=True)

    def close(self) -> None:
        self._print()


class _WidgetProgress(_TextProgress):
    """An ipywidgets progress bar with a one-line summary, updated as tasks finish."""

    def __init__(self, total: int) -> None:
        super().__init__(total)
        import ipywidgets as widgets
        from IPython.display import display

        self.bar = widgets.IntProgress(value=0, min=0, max=max(total, 1), description="evaluate")
        self.label = widgets.HTML(value=f"0/{total}")
        self.box = widgets.HBox([self.bar, self.label])
        self.handle = display(self.box, display_id=True)

    def _print(self) -> None:
        self.bar.value = self.done
        self.label.value = (f"{self.done}/{self.total} · {self.resumed} from the store · "
                            f"{self.failed} not completed · {time.monotonic() - self.started:.1f} s")
        if self.done == self.total:
            self.bar.bar_style = "success" if not self.failed else "warning"

    def close(self) -> None:
        self._print()
        if self.handle is None:
            return
        # The final count as static output: what a saved notebook shows without widget state.
        done = self.done == self.total and not self.failed
        colour = "#2e7d32" if done else "#ef6c00"
        text = f"evaluate: {self.summary()}"
        self.handle.update({"text/plain": text, "text/html": (
            f'<div style="font-family:monospace"><span style="color:{colour}">■</span> '
            f"{html.escape(text)}</div>")}, raw=True)
        self.box.close()


def in_notebook() -> bool:
    """True in a Jupyter kernel with a frontend; IPython is only looked at if already imported."""
    if "IPython" not in sys.modules:
        return False
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def make_progress(total: int) -> _TextProgress:
    if in_notebook():
        try:
            bar = _WidgetProgress(total)
            bar.every = 0.2  # a widget redraw is cheap; keep it lively
            return bar
        except ImportError:
            pass  # no ipywidgets: plain lines, which a notebook shows too
    return _TextProgress(total)
