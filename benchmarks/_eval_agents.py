"""Agent factories for benchmarks/evaluate_ray.py, importable by Ray workers (whose sys.path has
the script's folder): "_eval_agents:cpu_agent" and "_eval_agents:io_agent"."""

from __future__ import annotations

import asyncio
import hashlib

from loom_nb import Agent, Model, tool
from loom_nb.models import ModelRequest

#: SHA-256 rounds per tool call: about 50 ms of pure-Python-held CPU on this machine.
ROUNDS = 150_000


@tool
def crunch(text: str) -> str:
    """A CPU-bound tool (hashing): the kind of work a process pool or a cluster spreads out."""
    digest = text.encode()
    for _ in range(ROUNDS):
        digest = hashlib.sha256(digest).digest()
    return digest.hex()[:16]


def _calls_crunch(request: ModelRequest) -> str | dict[str, object]:
    if request.messages[-1].role == "tool":
        return f"done: {request.messages[-1].parts[0].content}"
    return {"tool": "crunch", "args": {"text": request.messages[0].text}}


async def _waits(request: ModelRequest) -> str:
    await asyncio.sleep(0.2)  # a model's latency: I/O the event loop overlaps
    return f"answer: {request.messages[0].text}"


def cpu_agent() -> Agent:
    return Agent(Model.function(_calls_crunch), tools=[crunch], name="cpu")


def io_agent() -> Agent:
    return Agent(Model.function(_waits), name="io")
