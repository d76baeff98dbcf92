"""The notebook layer: the ``%loom`` magics, live run displays, and the views and session panel
(``from loom_nb.notebook import SessionPanel, ContextView, BudgetView, SignalsView,
ApprovalsView, TraceView``).

Load it with ``%load_ext loom_nb``. This package is the only part of loom_nb that imports IPython
(and ipywidgets); the kernel stays importable without them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

#: nbval sanitize file for notebooks that run loom_nb: ids, timestamps, durations, temp paths.
SANITIZE_FILE = Path(__file__).with_name("sanitize.cfg")

__all__ = ["ApprovalsView", "BudgetView", "ContextView", "ReportView", "SessionPanel",
           "SignalsView", "TraceView", "load_ipython_extension", "unload_ipython_extension"]

_VIEWS = {"ApprovalsView", "BudgetView", "ContextView", "SignalsView", "TraceView"}


def __getattr__(name: str) -> Any:
    # The widgets import ipywidgets; load them when asked for, not with the magics.
    if name == "ApprovalsView":
        from .approvals import ApprovalsView

        return ApprovalsView
    if name in _VIEWS:
        from . import views

        return getattr(views, name)
    if name == "SessionPanel":
        from .panel import SessionPanel

        return SessionPanel
    if name == "ReportView":
        from .report_view import ReportView

        return ReportView
    raise AttributeError(f"module 'loom_nb.notebook' has no attribute {name!r}")


def load_ipython_extension(ipython: Any) -> None:
    """Register ``%loom`` / ``%%loom``.

    RunResult and the other kernel objects already render through ``_repr_mimebundle_``
    (plain text and static HTML), so no display formatter needs registering.
    """
    from . import questions
    from .magics import LoomMagics

    ipython.register_magics(LoomMagics(ipython))
    questions.install(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """Remove ``%loom`` so that ``%reload_ext loom_nb`` registers a fresh one."""
    from . import questions

    questions.uninstall(ipython)
    magics = ipython.magics_manager.magics
    for kind in ("line", "cell"):
        magics[kind].pop("loom", None)
    ipython.magics_manager.registry.pop("LoomMagics", None)
