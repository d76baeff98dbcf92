"""Kept for imports that name the run loop by its old path; it lives in :mod:`loom_nb.engine`."""

from __future__ import annotations

from .engine.loop import Decisions, RunLoop, new_run_id

__all__ = ["Decisions", "RunLoop", "new_run_id"]
