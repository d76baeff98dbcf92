"""Sessions: many runs of one agent with a shared history (see :class:`Session`).

=================  ===============================================================================
module             holds
=================  ===============================================================================
``core``           :class:`SessionConfig`, :class:`Session`: history, memory, subscribers, closing
``runs``           starting runs in turn, :class:`Run` and :class:`RunStream` handles, results,
                   the run paused for approval
``signals``        receiving signals, the :class:`Inbox` that carries out attention decisions,
                   timers
``feedback``       feedback records and ratings
=================  ===============================================================================
"""

from __future__ import annotations

from .core import Session, SessionConfig, new_session_id
from .runs import Run, RunState, RunStream

__all__ = ["Run", "RunState", "RunStream", "Session", "SessionConfig", "new_session_id"]
