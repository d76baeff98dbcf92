"""The engine: what executes a run. Policies decide; the engine asks them and carries it out.

=================  ===============================================================================
module             executes
=================  ===============================================================================
``loop``           :class:`RunLoop`: context, model turns, tool calls under governance, pauses
``record``         the run's events (to subscribers and the store), history commits, its result
``tool_call``      one tool call within its time bounds; runs started from inside a tool
``approval``       a pause for approval: the stored state (versioned), restore, claim, re-check
``attempts``       the harness's attempts and best-of candidates (:class:`AttemptControl`)
``subruns``        the delegation policy's sub-runs, their pauses and resumes
``window``         one run's view of the context protocol: snapshots, compaction, fitting items
=================  ===============================================================================

A policy module never imports this package: it declares the little it needs from a run as a
``typing.Protocol`` (:class:`~loom_nb.harness.RunControl`, :class:`~loom_nb.delegation.SubRunner`)
and the engine implements it. The session (``loom_nb.session``) owns the turn lock, the history
and the store; the engine runs inside one turn of it.
"""

from __future__ import annotations

from .loop import Decisions, RunLoop, Stop, new_run_id

__all__ = ["Decisions", "RunLoop", "Stop", "new_run_id"]
