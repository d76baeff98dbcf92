"""A paused run's stored state carries a version; a resume refuses a state of another version
before it claims, runs or stores anything."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from loom_nb import Agent, ConfigError, InMemoryStore, Model, SessionConfig, tool
from tests.backends import Backend


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> object:
    """An in-memory store, then each database store (the state goes through its JSON column)."""
    if request.param == "memory":
        return InMemoryStore()
    if request.param == "sqlite":
        return Backend("sqlite", str(tmp_path / "s.sqlite")).open()
    return Backend("postgres", request.getfixturevalue("postgres_dsn")).open()


def test_a_paused_state_of_another_version_is_refused_and_the_run_still_waits(store: object) -> None:
    sent: list[str] = []

    @tool(requires_approval=True)
    def send_email(to: str) -> str:
        """Send an email."""
        sent.append(to)
        return f"sent to {to}"

    agent = Agent(Model.scripted([{"tool": "send_email", "args": {"to": "ana@example.org"}},
                                  "Sent."]), tools=[send_email])
    session = agent.session(SessionConfig(id="versioned", store=store))
    paused = session.run_sync("Email Ana")
    assert paused.status == "needs_approval" and paused.pending
    record = store.get_run(paused.run_id)
    assert record is not None and record.state is not None and record.state["version"] == 1
    store.save_run(dataclasses.replace(record, state={**record.state, "version": 99}))

    with pytest.raises(ConfigError, match="version 99.*reads version 1"):
        paused.approve().resume_sync()
    assert sent == []
    after = store.get_run(paused.run_id)
    assert after is not None and after.status == "needs_approval"
