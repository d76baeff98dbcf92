"""Harness: how a run is attempted, and which attempt's answer the run keeps.

* ``Harness.single()``: one attempt (its verdict is still recorded when a quality gate is set).
* ``Harness.retry(max_attempts)``: attempt, judge with the quality gate, and on FAIL try again in
  the same run with the critique in context, until an attempt passes or attempts run out.
* ``Harness.best_of(n)``: n candidates, each a nested sub-run in its own copy of the session's
  context (they do not see each other); the first that passes the gate wins (else the first),
  and only the winner's messages join the session. Tools run in every candidate. The candidates
  run at once (``best_of(n, parallel=False)``: one after another); a cancel reaches all of them.
* ``Harness.custom(fn)``: ``await fn(request)`` with a :class:`HarnessRequest`, returning the
  :class:`Attempt` to keep (or its text).

Each attempt is a ``harness.attempt`` event and each verdict a ``quality.verdict`` event; the
RunResult says which attempt won. A final FAIL ends the run as ``failed`` with the critique (the
best answer stays in ``output``): a failing gate is never reported as success.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol, TypeAlias

from ._tasks import all_settled
from .errors import ConfigError
from .limits import LimitName, Stop
from .quality import Verdict

if TYPE_CHECKING:
    from .events import HarnessAttemptData, QualityJudgeData, QualityVerdictData
    from .messages import Usage
    from .models import Model
    from .quality import QualityGate
    from .task import RuntimeTask

__all__ = ["Attempt", "CandidateRun", "Harness", "HarnessKind", "HarnessRequest", "RunControl"]

HarnessKind: TypeAlias = Literal["single", "retry", "best_of", "custom"]
RETRY_NOTE = ("Your previous answer did not pass review. Critique: {critique}\n"
              "Write an improved answer that addresses the critique.")


@dataclass(frozen=True, kw_only=True)
class CandidateRun:
    """How a candidate sub-run ended, as the engine reports it to the harness."""

    run_id: str
    output: str
    status: str
    limit: LimitName | None = None
    error: str | None = None
    #: The engine's handle on the sub-run, given back to :meth:`RunControl.adopt`.
    handle: object = None


class RunControl(Protocol):
    """What a harness may ask of the run it attempts. The harness decides (how many attempts,
    which answer to keep); the run carries each attempt out. ``loom_nb.engine`` implements it."""

    @property
    def task(self) -> RuntimeTask: ...
    @property
    def gate(self) -> QualityGate | None: ...
    @property
    def judge_model(self) -> Model: ...
    def record(self, type: Literal["harness.attempt", "quality.verdict", "quality.judge"],
               data: HarnessAttemptData | QualityVerdictData | QualityJudgeData) -> None: ...
    def count(self, usage: Usage) -> None:
        """Count what a judge used as the run's cost."""
    async def attempt(self, note: str | None) -> tuple[str, Stop]:
        """Say ``note`` (if any), then run the model and tools until an answer: its text and how
        the pass stopped."""
    async def candidate(self, index: int) -> CandidateRun:
        """Run a nested sub-run in a copy of the run's context (recorded as attempt ``index``)."""
    def adopt(self, candidate: CandidateRun) -> None:
        """Keep a candidate: its messages join the session, its answer becomes the run's."""


@dataclass(kw_only=True)
class Attempt:
    """One attempt at the run's task."""

    index: int
    output: str
    stop: Stop
    verdict: Verdict | None = None
    run_id: str | None = None  #: the nested sub-run of a best-of candidate
    _candidate: CandidateRun | None = None


class HarnessRequest:
    """What a harness works with: attempts, candidates and the quality gate of one run."""

    def __init__(self, control: RunControl, kind: HarnessKind) -> None:
        self.control = control
        self.task = control.task
        self._announce = kind != "single" or control.gate is not None
        self.attempts: list[Attempt] = []

    @property
    def has_gate(self) -> bool:
        return self.control.gate is not None

    async def attempt(self, note: str | None = None) -> Attempt:
        """Run the model and tools in this run until an answer; ``note`` is said to it first."""
        index = len(self.attempts) + 1
        if self._announce:  # a plain single pass is the run itself: only real attempts get an event
            self.control.record("harness.attempt",
                                {"attempt": index, "mode": "in_run", "note": note})
        output, stop = await self.control.attempt(note)
        attempt = Attempt(index=index, output=output, stop=stop)
        self.attempts.append(attempt)
        return attempt

    async def candidate(self) -> Attempt:
        """Run one candidate as a nested sub-run in a copy of this run's context."""
        attempt = await self._candidate(len(self.attempts) + 1)
        self.attempts.append(attempt)
        return attempt

    async def candidates(self, n: int) -> list[Attempt]:
        """Run ``n`` candidates at once, each a nested sub-run in its own copy of this run's
        context; they are numbered (and kept in ``attempts``) in the order they were started."""
        first = len(self.attempts) + 1
        attempts = await all_settled(self._candidate(first + i) for i in range(n))
        self.attempts.extend(attempts)
        return attempts

    async def _candidate(self, index: int) -> Attempt:
        run = await self.control.candidate(index)
        # A candidate that failed (or was cancelled) ends "completed" with the failing verdict
        # below, so the run reports its error rather than a limit it never reached.
        stop: Stop = (run.limit or "max_turns") if run.status == "limit" else "completed"
        attempt = Attempt(index=index, output=run.output, stop=stop, run_id=run.run_id,
                          _candidate=run)
        if run.status not in ("completed", "limit"):
            attempt.verdict = Verdict(passed=False, gate="run",
                                      critique=f"The candidate run {run.status}: {run.error}")
        return attempt

    async def judge(self, attempt: Attempt) -> Verdict | None:
        """The quality gate's verdict on ``attempt`` (None without a gate); recorded as an event."""
        gate = self.control.gate
        if gate is None or attempt.stop != "completed":
            return attempt.verdict
        if attempt.verdict is None:
            attempt.verdict = await gate.evaluate(attempt.output, self.task,
                                                  self.control.judge_model)
            self.control.count(attempt.verdict.usage)
            for call in attempt.verdict.all_calls():  # the calls the usage above counts
                self.control.record("quality.judge", {"attempt": attempt.index, "purpose": "gate",
                                                      "gate": gate.name, **call.to_dict()})  # type: ignore[arg-type]
        self.control.record("quality.verdict",
                            {"attempt": attempt.index, **attempt.verdict.to_dict()})
        return attempt.verdict

    def adopt(self, attempt: Attempt) -> None:
        """Keep a candidate: its messages join the session, its answer becomes the run's."""
        if attempt._candidate is not None:
            self.control.adopt(attempt._candidate)


Strategy: TypeAlias = Callable[[HarnessRequest], Awaitable[Attempt]]


class Harness:
    """How a run is attempted. Build one with the static methods."""

    def __init__(self, kind: HarnessKind, strategy: Strategy, **describe: Any) -> None:
        self.kind = kind
        self._strategy = strategy
        self.options = describe

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Harness.{self.kind}({options})"

    async def run(self, request: HarnessRequest) -> Attempt:
        attempt = await self._strategy(request)
        if attempt.verdict is None:  # a custom strategy may not judge: the gate still does
            await request.judge(attempt)
        return attempt

    @staticmethod
    def single() -> Harness:
        async def strategy(request: HarnessRequest) -> Attempt:
            attempt = await request.attempt()
            await request.judge(attempt)
            return attempt

        return Harness("single", strategy)

    @staticmethod
    def retry(max_attempts: int = 3) -> Harness:
        if max_attempts < 1:
            raise ConfigError("Harness.retry(max_attempts) needs at least 1 attempt.")

        async def strategy(request: HarnessRequest) -> Attempt:
            note = None
            for _ in range(max_attempts):
                attempt = await request.attempt(note)
                verdict = await request.judge(attempt)
                if verdict is None or verdict.passed or attempt.stop != "completed":
                    return attempt
                note = RETRY_NOTE.format(critique=verdict.critique)
            return attempt

        return Harness("retry", strategy, max_attempts=max_attempts)

    @staticmethod
    def best_of(n: int = 3, *, parallel: bool = True) -> Harness:
        """``n`` candidates, at once (``parallel=False``: one after another); the first that
        passes the gate is kept."""
        if n < 1:
            raise ConfigError("Harness.best_of(n) needs n >= 1.")

        async def strategy(request: HarnessRequest) -> Attempt:
            if parallel:
                candidates = await request.candidates(n)
            else:
                candidates = [await request.candidate() for _ in range(n)]
            for candidate in candidates:
                await request.judge(candidate)
            winner = next((c for c in candidates if c.verdict is None or c.verdict.passed), candidates[0])
            request.adopt(winner)
            return winner

        return Harness("best_of", strategy, n=n, **({} if parallel else {"parallel": False}))

    @staticmethod
    def custom(fn: Callable[[HarnessRequest], Any]) -> Harness:
        import inspect
        async def strategy(request: HarnessRequest) -> Attempt:
            value = fn(request)
            if inspect.isawaitable(value):
                value = await value
            if isinstance(value, Attempt):
                return value
            if isinstance(value, str) and request.attempts:
                last = request.attempts[-1]  # its verdict judged other text: this one is judged anew
                return Attempt(index=last.index, output=value, stop=last.stop)
            raise ConfigError("A custom harness returns the Attempt to keep (or its text) after "
                              "at least one request.attempt() or request.candidate().")

        return Harness("custom", strategy, fn=getattr(fn, "__name__", "fn"))
