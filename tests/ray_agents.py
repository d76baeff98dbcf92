"""Agent factories for tests/test_ray_executor.py: importable by "module:function", so that Ray
worker processes build the same agents as the driver (the worker's cwd is the repository)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from loom_nb import Agent, Model, tool
from loom_nb.models import ModelRequest


@tool
def echo(text: str) -> str:
    """Echo the text."""
    return text.upper()


def answer(request: ModelRequest) -> str | dict[str, object]:
    """Answers from the request: a tool call first for goals with "tool" in them."""
    goal = request.messages[0].text
    if request.messages[-1].role == "tool":
        return f"done: {request.messages[-1].parts[0].content}"
    if "tool" in goal:
        return {"tool": "echo", "args": {"text": goal}}
    return f"answer: {goal}"


def make_agent() -> Agent:
    return Agent(Model.function(answer), tools=[echo], name="shared")


def die_once(request: ModelRequest) -> str:
    """``die <path>``: the first time (no file at path) the process kills itself mid-run."""
    goal = request.messages[0].text
    if goal.startswith("die "):
        marker = Path(goal.split(" ", 1)[1])
        if not marker.exists():
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)
    return f"answer: {goal}"


def make_dying_agent() -> Agent:
    return Agent(Model.function(die_once), name="dying")


async def hang(request: ModelRequest) -> str:
    """``hang``: waits (until cancelled) far longer than any test."""
    goal = request.messages[0].text
    if "hang" in goal:
        await asyncio.sleep(600)
    return f"answer: {goal}"


def make_hanging_agent() -> Agent:
    return Agent(Model.function(hang), name="hanging")


def not_an_agent() -> str:
    return "not an agent"


def make_agent_only_on_the_driver() -> Agent:
    """Builds on the driver (whose pid the test puts in LOOM_TEST_DRIVER_PID) and fails in any
    other process, as a factory whose secret or file is missing on the workers would."""
    if os.environ.get("LOOM_TEST_DRIVER_PID") != str(os.getpid()):
        raise RuntimeError("the model key is not set on this worker")
    return make_agent()
