"""A worker process for test_resume_claim: it resumes the paused runs it is told about, at the
same moment as another worker (a shared barrier), and says how that went.

The approved tool appends a line to a log file (O_APPEND: one write per call, whichever process
makes it), so the test can count how often it really ran.
"""

from __future__ import annotations

import os
from multiprocessing.connection import Connection
from multiprocessing.synchronize import Barrier
from typing import Any


def serve(conn: Connection, barrier: Barrier, log: str) -> None:
    from loom_nb import Agent, Model, RunAlreadyResumedError, SessionConfig, tool

    @tool(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        try:
            os.write(fd, f"{os.getpid()} {to}\n".encode())
        finally:
            os.close(fd)
        return f"sent to {to}"

    while (job := conn.recv()) is not None:
        path, session_id = job
        agent = Agent(Model.scripted(["Sent."]), tools=[send_email])
        # Opened before the barrier: both workers see the run waiting, as two notebooks would.
        session = agent.session(SessionConfig(id=session_id, store=path))
        (paused,) = session.waiting
        paused.approve()
        barrier.wait()
        outcome: tuple[Any, ...]
        try:
            outcome = ("resumed", paused.resume_sync().status)
        except RunAlreadyResumedError as exc:
            outcome = ("refused", str(exc))
        except Exception as exc:  # noqa: BLE001 - the test reports whatever else happened
            outcome = ("error", f"{type(exc).__name__}: {exc}")
        session.close()
        conn.send(outcome)
