"""Richer approvals: what a pause costs, and what remembered approvals cost a turn.

Prints (does not assert), on the scripted model and a sync tool:

- pause -> decide -> resume: one run that pauses on a call, approved (plain, with edited
  arguments, remembered) or a question answered, with the in-memory store and with SQLite;
- a 50-turn tool run's time per turn with a tool the session remembers (no pause: the remembered
  allow is read once per run, when governance first asks) beside the same run where governance
  allows the tool outright;
- the read of ``session.remembered`` against the size of the session's feedback log (the
  engine reads it at most once per run; the built-in stores query the ``approval`` kind only).

    python3 benchmarks/approvals.py
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from loom_nb import Agent, Capability, Model, SessionConfig, tool
from loom_nb.feedback import FeedbackRecord
from loom_nb.runtime import Runtime
from loom_nb.store import SQLiteStore


@tool(requires_approval=True)
def guarded(n: int) -> str:
    """A guarded tool."""
    return str(n)


@tool
def free(n: int) -> str:
    """A free tool."""
    return str(n)


def _cycle(store: Any, how: str) -> float:
    if how == "answer":
        agent = Agent(Model.scripted([{"tool": "ask_user", "id": "q", "args": {"question": "?"}}, "ok"]),
                      capabilities=[Capability.ask_user()])
    else:
        agent = Agent(Model.scripted([{"tool": "guarded", "id": "c", "args": {"n": 1}}, "ok"]),
                      tools=[guarded])
    session = agent.session(SessionConfig(store=store))
    started = time.perf_counter()
    paused = session.run_sync("go")
    if how == "answer":
        paused.answer("q", "yes")
    else:
        paused.approve("c", args={"n": 2} if how == "edit" else None, remember=how == "remember")
    assert paused.resume_sync().status == "completed"
    return (time.perf_counter() - started) * 1000


def _per_turn(remembered: bool, turns: int = 50) -> float:
    name = "guarded" if remembered else "free"
    script = [{"tool": name, "args": {"n": i}} for i in range(turns)] + ["done"]
    agent = Agent(Model.scripted(script), tools=[guarded, free], runtime=Runtime.sdk(max_turns=None))
    session = agent.session()
    if remembered:
        session.remember_approval("guarded")
    started = time.perf_counter()
    assert session.run_sync("go").status == "completed"
    return (time.perf_counter() - started) / (turns + 1) * 1e6


def main() -> None:
    folder = Path(tempfile.mkdtemp())
    print("pause -> decide -> resume, median of 20 (ms)")
    for how in ("approve", "edit", "remember", "answer"):
        memory = statistics.median(_cycle(None, how) for _ in range(20))
        sqlite = statistics.median(_cycle(SQLiteStore(folder / f"{how}-{i}.sqlite"), how)
                                   for i in range(20))
        print(f"  {how:<9} in-memory {memory:6.2f}   sqlite {sqlite:6.2f}")
    print("50 tool turns, per turn, median of 9 (µs)")
    for label, remembered in (("allowed by governance", False), ("remembered approval", True)):
        print(f"  {label:<22} {statistics.median(_per_turn(remembered) for _ in range(9)):7.1f}")
    print("session.remembered against the feedback log's size (ms, median of 20)")
    store = SQLiteStore(folder / "feedback.sqlite")
    session = Agent(Model.scripted(["x"])).session(SessionConfig(id="s", store=store))
    session.remember_approval("guarded")
    for size in (0, 1_000, 10_000):
        for _ in range(size - len(store.feedback("s")) + 1):
            store.append_feedback(FeedbackRecord(session_id="s", run_id=None, kind="tool",
                                                 data={"name": "free", "is_error": False}))
        samples = []
        for _ in range(20):
            started = time.perf_counter()
            assert session.remembered == {"guarded"}
            samples.append((time.perf_counter() - started) * 1000)
        print(f"  {size:>6} records  {statistics.median(samples):6.3f}")


if __name__ == "__main__":
    main()
