"""A view shows the state of its own cell.

A view displayed in a cell follows its session while that cell runs; when the next cell starts,
the view stops taking in what later cells do (new runs, signals, a paused run resumed from code).
Without this, a notebook run top to bottom saves every view with the end-of-notebook state, so a
view above a cell that says "nothing has run yet" already shows the answer (in JupyterLab, in
the widget state that nbviewer and static HTML render, and after a reload). Runs that are still
going when the next cell starts (``session.start()`` in the view's cell) are followed to the end.
Displaying the view again in a later cell brings it up to date and makes it that cell's.

This is for views of a session. A view of one run (a RunResult) shows that run wherever it goes
on, like the run's card: a paused run approved in a later cell shows its answer where it paused.

IPython's ``pre_run_cell`` event marks the start of a cell; it is not raised for the silent
executions a frontend makes on its own.
"""

from __future__ import annotations

import weakref
from typing import Any, Protocol

__all__ = ["CellBound", "adopt"]


class CellBound(Protocol):
    """What a view offers to be bound to a cell."""

    def freeze(self) -> None: ...


# Views displayed since the current cell started; frozen when the next one starts.
_DISPLAYED: weakref.WeakSet[Any] = weakref.WeakSet()
_HOOKED: weakref.WeakSet[Any] = weakref.WeakSet()


def adopt(view: CellBound, shell: Any) -> None:
    """Bind ``view`` to the cell that ``shell`` is running (no-op outside IPython)."""
    if shell is None or not hasattr(shell, "events"):
        return
    if shell not in _HOOKED:
        shell.events.register("pre_run_cell", _next_cell)
        _HOOKED.add(shell)
    _DISPLAYED.add(view)


def _next_cell(*_info: Any) -> None:
    views = list(_DISPLAYED)
    _DISPLAYED.clear()
    for view in views:
        view.freeze()
