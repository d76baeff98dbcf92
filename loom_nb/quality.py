"""QualityGate: is a run's answer good enough? PASS or FAIL, with a critique.

Gates:

* ``QualityGate.check(fn)``: ``fn(output)`` (or ``fn(output, task)``) returns a bool or
  ``(bool, critique)``; sync or async.
* ``QualityGate.output_type(Model)``: the answer must be JSON that validates against a pydantic
  type; the validation errors are the critique.
* ``QualityGate.criteria([...], model=None)``: a model judges the answer against the criteria (the
  task's criteria when the list is empty) and must answer with a first line that is exactly
  ``PASS`` or ``FAIL``; anything else is a FAIL that says the verdict could not be read.
* ``gate_a & gate_b`` (all must pass), ``gate_a | gate_b`` (one must pass).

The harness runs the gate; each verdict is a ``quality.verdict`` event and part of the RunResult.
"""

from __future__ import annotations

import re
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from .cost import priced
from .errors import ConfigError
from .messages import Message, Usage
from .models import Model, ModelRequest, resolve_model
from .task import RuntimeTask

if TYPE_CHECKING:
    import pydantic

    from .events import VerdictData

__all__ = ["JudgeCall", "QualityGate", "Verdict", "judge_call"]

JUDGE_INSTRUCTIONS = (
    "You are a strict reviewer. Judge whether the ANSWER satisfies every CRITERION for the TASK. "
    "Reply with the single word PASS or FAIL on the first line, and on the next lines a short "
    "critique: what is wrong or missing (for FAIL) or why it passes."
)
_VERDICT = re.compile(r"^\s*\**\s*(PASS|FAIL)\s*\**\s*[.!:]?\s*$")


@dataclass(frozen=True, kw_only=True)
class JudgeCall:
    """One model call made to judge an answer (a gate's or a scorer's): recorded as a
    ``quality.judge`` event, so the calls that a run's (or a score's) usage counts are visible."""

    model: str
    system: str
    prompt: str
    reply: str
    usage: Usage
    duration_ms: float

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "system": self.system, "prompt": self.prompt,
                "reply": self.reply, "usage": self.usage.to_dict(),
                "duration_ms": self.duration_ms}


async def judge_call(model: Model, system: str, prompt: str) -> JudgeCall:
    """Ask ``model`` once, timing the call; the reply and usage come back as a JudgeCall."""
    started = time.perf_counter()
    response = await model.request(ModelRequest(system=system, messages=(Message.user(prompt),)))
    return JudgeCall(model=model.identifier, system=system, prompt=prompt,
                     reply=response.message.text,
                     usage=priced(response.usage, model, response.model_name),
                     duration_ms=(time.perf_counter() - started) * 1000)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    """PASS or FAIL for one answer, with the critique and the gate that gave it."""

    passed: bool
    critique: str
    gate: str
    parts: tuple[Verdict, ...] = ()
    usage: Usage = field(default_factory=Usage)
    #: The judge model calls behind this verdict (its parts' too), in order.
    calls: tuple[JudgeCall, ...] = ()

    def all_calls(self) -> tuple[JudgeCall, ...]:
        return self.calls + tuple(c for p in self.parts for c in p.all_calls())

    def to_dict(self) -> VerdictData:
        data: VerdictData = {"passed": self.passed, "critique": self.critique, "gate": self.gate}
        if self.parts:
            data["parts"] = [p.to_dict() for p in self.parts]
        return data


Evaluate = Callable[[str, RuntimeTask, Model], Awaitable[Verdict]]


class QualityGate:
    """Acceptance criteria for a run's answer. Build one with the static methods."""

    def __init__(self, name: str, evaluate: Evaluate) -> None:
        self.name = name
        self._evaluate = evaluate

    def __repr__(self) -> str:
        return f"<QualityGate {self.name}>"

    async def evaluate(self, output: str, task: RuntimeTask, model: Model) -> Verdict:
        """The verdict on ``output``; ``model`` judges when the gate has no model of its own."""
        return await self._evaluate(output, task, model)

    def __and__(self, other: QualityGate) -> QualityGate:
        return QualityGate.all(self, other)

    def __or__(self, other: QualityGate) -> QualityGate:
        return QualityGate.any(self, other)

    # -- constructors ------------------------------------------------------------------------------

    @staticmethod
    def check(fn: Callable[..., Any], *, name: str | None = None) -> QualityGate:
        """A Python check: ``fn(output)`` or ``fn(output, task)`` -> bool or (bool, critique)."""
        import inspect
        label: str = name if name else getattr(fn, "__name__", "check")
        takes_task = len(inspect.signature(fn).parameters) >= 2

        async def evaluate(output: str, task: RuntimeTask, model: Model) -> Verdict:
            value = fn(output, task) if takes_task else fn(output)
            if inspect.isawaitable(value):
                value = await value
            passed, critique = _check_result(value, label)
            return Verdict(passed=passed, critique=critique, gate=f"check {label}")

        return QualityGate(f"check {label}", evaluate)

    @staticmethod
    def output_type(model_type: type[pydantic.BaseModel] | Any) -> QualityGate:
        """The answer must be JSON (optionally in a ```json fence) valid for ``model_type``:
        validated as ``Agent(output_type=...)`` validates (see :mod:`loom_nb.output`)."""
        from .errors import OutputValidationError
        from .output import OutputSpec

        spec = OutputSpec(model_type)
        label = spec.name

        async def evaluate(output: str, task: RuntimeTask, model: Model) -> Verdict:
            try:
                spec.parse(output)
            except OutputValidationError as exc:
                return Verdict(passed=False, gate=f"output_type {label}",
                               critique=f"The answer must be JSON matching {label}: {exc.problems}.")
            return Verdict(passed=True, critique=f"valid {label}", gate=f"output_type {label}")

        return QualityGate(f"output_type {label}", evaluate)

    @staticmethod
    def criteria(criteria: Sequence[str] = (), *, model: Model | str | None = None) -> QualityGate:
        """A model judges the answer against ``criteria`` (or the task's criteria)."""
        judge_model = resolve_model(model) if model is not None else None
        fixed = [str(c) for c in criteria]

        async def evaluate(output: str, task: RuntimeTask, run_model: Model) -> Verdict:
            wanted = fixed or task.criteria
            if not wanted:
                raise ConfigError("QualityGate.criteria has no criteria: give a list, or run a "
                                  "RuntimeTask(..., criteria=[...]).")
            return await judge(judge_model or run_model, output, task, wanted)

        return QualityGate("criteria judge", evaluate)

    @staticmethod
    def all(*gates: QualityGate) -> QualityGate:
        """Passes when every gate passes (all are evaluated, for a complete critique)."""
        async def evaluate(output: str, task: RuntimeTask, model: Model) -> Verdict:
            parts = tuple([await g.evaluate(output, task, model) for g in gates])
            failed = [p for p in parts if not p.passed]
            critique = " ".join(f"[{p.gate}] {p.critique}" for p in failed) or "all gates passed"
            return Verdict(passed=not failed, critique=critique, gate="all", parts=parts,
                           usage=sum((p.usage for p in parts), Usage()))

        return QualityGate("all(" + ", ".join(g.name for g in gates) + ")", evaluate)

    @staticmethod
    def any(*gates: QualityGate) -> QualityGate:
        """Passes when at least one gate passes (checked in order, stopping at the first pass)."""
        async def evaluate(output: str, task: RuntimeTask, model: Model) -> Verdict:
            parts: list[Verdict] = []
            for gate in gates:
                parts.append(await gate.evaluate(output, task, model))
                if parts[-1].passed:
                    break
            passed = parts[-1].passed
            critique = parts[-1].critique if passed else " ".join(f"[{p.gate}] {p.critique}" for p in parts)
            return Verdict(passed=passed, critique=critique, gate="any", parts=tuple(parts),
                           usage=sum((p.usage for p in parts), Usage()))

        return QualityGate("any(" + ", ".join(g.name for g in gates) + ")", evaluate)


async def judge(model: Model, output: str, task: RuntimeTask, criteria: Sequence[str]) -> Verdict:
    """Ask ``model`` for a strict PASS/FAIL verdict on ``output``."""
    prompt = (f"TASK:\n{task.goal}\n\nCRITERIA:\n" + "\n".join(f"- {c}" for c in criteria)
              + f"\n\nANSWER:\n{output}")
    call = await judge_call(model, JUDGE_INSTRUCTIONS, prompt)
    passed, critique = parse_verdict(call.reply)
    return Verdict(passed=passed, critique=critique, gate=f"criteria judge ({model.identifier})",
                   usage=call.usage, calls=(call,))


def parse_verdict(text: str) -> tuple[bool, str]:
    """(passed, critique) from a judge's reply; a reply without a clear verdict is a FAIL."""
    lines = text.strip().splitlines()
    first = lines[0] if lines else ""
    match = _VERDICT.match(first)
    if match is None:
        shown = first if len(first) <= 80 else first[:77] + "..."
        return False, (f"The judge's verdict could not be read: the first line must be exactly "
                       f"PASS or FAIL, but it was {shown!r}.")
    critique = "\n".join(lines[1:]).strip() or ("passed" if match.group(1) == "PASS" else "failed")
    return match.group(1) == "PASS", critique


def _check_result(value: Any, label: str) -> tuple[bool, str]:
    if isinstance(value, bool):
        return value, "passed" if value else f"check {label} failed"
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], bool):
        return value[0], str(value[1])
    raise ConfigError(f"Quality check {label!r} returned {value!r}: return a bool or (bool, critique).")

