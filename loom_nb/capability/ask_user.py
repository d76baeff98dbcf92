"""``Capability.ask_user()``: a tool through which the model asks the person a question.

A call of the tool does not run anything: governance decides it ``ask`` (``check="question"``)
and the run pauses exactly like a call waiting for approval (``status="needs_approval"``, its
state stored, so that it survives a restart). The waiting call is a
:class:`~loom_nb.result.PendingApproval` with ``kind="question"``; the person answers with
``session.answer(call_id, text)`` / ``result.answer(...)`` (or ``%loom answer``, or the text box
of the approvals view), the answer becomes the call's result, and the run goes on. A rejected
question tells the model that the person declined to answer.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Annotated, ClassVar

from ..errors import ConfigError, ToolError
from ..tools import Tool, tool

if TYPE_CHECKING:
    from . import Capability

__all__ = ["MAX_QUESTION_CHARS", "QuestionTool", "ask_user_capability"]

#: The longest question the model may ask (a longer one goes back to it as an error).
MAX_QUESTION_CHARS = 4000

INSTRUCTIONS = ("When you cannot go on without information or a choice only the person can give, "
                "call {name} with one short, specific question. Do not ask what you can find "
                "out with your other tools.")


@dataclass(eq=False)
class QuestionTool(Tool):
    """A tool whose calls are questions to the person (see the module docstring)."""

    asks_person: ClassVar[bool] = True


def ask_user_capability(name: str = "ask_user", *, description: str | None = None,
                        max_chars: int = MAX_QUESTION_CHARS) -> Capability:
    from pydantic import Field

    from . import Capability

    if not isinstance(max_chars, int) or isinstance(max_chars, bool) or max_chars < 1:
        raise ConfigError(f"Capability.ask_user(max_chars=...) takes a positive int, not {max_chars!r}.")

    def ask_user(question: str) -> str:
        """Ask the person a question and wait for their answer.

        Args:
            question: the question, in one or two sentences.
        """
        # Governance pauses every call for the person's answer; none reaches this body.
        raise ToolError("ask_user has no answer to give: a person answers it while the run waits.")

    # Real objects, not strings: the bound comes from this call (the module defers annotations).
    ask_user.__annotations__ = {"question": Annotated[str, Field(min_length=1, max_length=max_chars)],
                                "return": str}
    # requires_approval: a profile with no one to ask (Runtime.autonomous) denies it by that mark.
    made = tool(name=name, description=description, requires_approval=True)(ask_user)
    question_tool = QuestionTool(**{f.name: getattr(made, f.name) for f in fields(made)})
    return Capability(name=name, toolset=(question_tool,), kind="ask_user",
                      instructions=INSTRUCTIONS.format(name=name))
