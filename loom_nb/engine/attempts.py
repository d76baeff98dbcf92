"""The harness's attempts, carried out: :class:`AttemptControl` is the
:class:`~loom_nb.harness.RunControl` of one run.

The harness decides how many attempts a run makes and which answer it keeps; this module runs
them: an attempt is more model turns in the same run (after a note such as a critique), and a
candidate is a nested sub-run in a copy of the run's context whose messages join the session
only when the harness adopts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..harness import CandidateRun
from ..limits import Stop

if TYPE_CHECKING:
    from ..events import HarnessAttemptData, QualityJudgeData, QualityVerdictData
    from ..messages import Usage
    from ..models import Model
    from ..quality import QualityGate
    from ..task import RuntimeTask
    from .loop import RunLoop

__all__ = ["AttemptControl"]


class AttemptControl:
    """How the attempts of one run are carried out (see :class:`~loom_nb.harness.RunControl`)."""

    def __init__(self, loop: RunLoop, started: float) -> None:
        self.loop = loop
        self._started = started  # the run's time limit counts from its start, over all attempts

    @property
    def task(self) -> RuntimeTask:
        return self.loop.task

    @property
    def gate(self) -> QualityGate | None:
        return self.loop.agent.runtime.quality

    @property
    def judge_model(self) -> Model:
        return self.loop.agent.model

    def record(self, type: Literal["harness.attempt", "quality.verdict", "quality.judge"],
               data: HarnessAttemptData | QualityVerdictData | QualityJudgeData) -> None:
        self.loop.emit(type, data)

    def count(self, usage: Usage) -> None:
        self.loop.absorb_usage(usage, 0)

    async def attempt(self, note: str | None) -> tuple[str, Stop]:
        if note:
            self.loop.commit_note(note)
        stop = await self.loop.run_turns(self._started)
        return self.loop.output, stop

    async def candidate(self, index: int) -> CandidateRun:
        return await _candidate(self.loop, index)

    def adopt(self, candidate: CandidateRun) -> None:
        from .loop import RunLoop

        assert isinstance(candidate.handle, RunLoop)  # made by _candidate below
        self.loop.commit(*candidate.handle.added)
        self.loop.output = candidate.output


async def _candidate(parent: RunLoop, index: int) -> CandidateRun:
    """A best-of candidate: a nested sub-run in a copy of ``parent``'s context, continuing from
    the same point (its prompt is already in the copied history)."""
    from .loop import RunLoop

    child = parent.session.child(f"candidate-{index}", seed=True)
    loop = RunLoop(child, parent.task, parent.context, parent_run_id=parent.run_id,
                   depth=parent.depth, continuing=True, output=parent.steer.spec)
    loop.subscribers.extend(parent.subscribers)  # live views see nested runs too
    parent.emit("harness.attempt", {"attempt": index, "mode": "candidate",
                                    "run_id": loop.run_id, "session_id": child.id})
    result = await child._execute(loop)
    parent.absorb_usage(result.usage, result.turns)
    return CandidateRun(run_id=loop.run_id, output=result.text, status=result.status,
                        limit=result.limit, error=result.error, handle=loop)
