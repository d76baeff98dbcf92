"""A generated SQLite store at research scale (~100,000 events / ~9,000 runs / ~36,000 messages).

    .venv/bin/python benchmarks/export_store.py PATH [--events 100000]

A small template is made with the real kernel (so every payload is one loom_nb writes): an
evaluation of tool-calling tasks with a scorer (evaluation identity columns, feedback records),
and a plain session whose governance denies one tool (``governance.decision`` events). The
template's rows are then copied with SQL under new session and run ids until the store holds
the wanted number of events: seconds, not the minutes running 9,000 agents would take.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: The tables copied, with the columns that hold a session or run id (suffixed in each copy).
_ID_COLUMNS: dict[str, tuple[str, ...]] = {
    "sessions": ("id",), "runs": ("run_id", "session_id", "parent_run_id"),
    "events": ("run_id", "session_id", "parent_run_id"), "messages": ("session_id", "run_id"),
    "feedback": ("session_id", "run_id"), "signals": ("session_id", "run_id"),
}


def _template(path: str) -> None:
    """A few real runs in ``path``: an evaluation (10 tasks) and one governed session (10 runs)."""
    import loom_nb
    from loom_nb import Agent, Model, Runtime, SessionConfig, tool
    from loom_nb.governance import GovernancePolicy
    from loom_nb.scoring import exact

    @tool
    def lookup(key: str) -> str:
        """Look a key up."""
        return f"value of {key}"

    @tool
    def wipe(path: str) -> str:
        """Delete a path."""
        return "gone"

    def answer(request: Any) -> Any:
        last = request.messages[-1]
        if last.role == "tool":
            return f"The answer is {last.parts[0].content}."
        return [{"tool": "lookup", "args": {"key": last.text}},
                {"tool": "wipe", "args": {"path": "/tmp/x"}}]

    agent = Agent(Model.function(answer), tools=[lookup, wipe], name="bench",
                  runtime=Runtime.sdk(governance=GovernancePolicy(deny=["wipe"])))
    tasks = [{"id": f"t{i}", "input": f"k{i}", "target": f"The answer is value of k{i}."}
             for i in range(10)]
    loom_nb.evaluate(agent, tasks, scorers=[exact()], store=path, progress=False, concurrency=1,
                     name="bench")
    session = agent.session(SessionConfig(id="plain", store=path))
    for i in range(10):
        session.run_sync(f"q{i}")


def _counts(db: sqlite3.Connection) -> dict[str, int]:
    return {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in _ID_COLUMNS}


def build(path: str, events: int = 100_000) -> dict[str, Any]:
    """Make the store at ``path`` (which must not exist); returns its counts and build time."""
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        template = os.path.join(folder, "template.sqlite")
        _template(template)
        db = sqlite3.connect(path)
        db.execute("ATTACH DATABASE ? AS t", (template,))
        schema = [sql for (sql,) in db.execute(
            "SELECT sql FROM t.sqlite_master WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%' "
            "ORDER BY type = 'index'")]  # tables before their indexes
        for sql in schema:
            db.execute(sql)
        per_copy = db.execute("SELECT COUNT(*) FROM t.events").fetchone()[0]
        copies = -(-events // per_copy)
        version = db.execute("PRAGMA t.user_version").fetchone()[0]
        db.execute(f"PRAGMA main.user_version = {int(version)}")
        for k in range(copies):  # store order: one copy after the other, as sessions would be
            for table, ids in _ID_COLUMNS.items():
                columns = [name for (_, name, *_) in db.execute(f"PRAGMA t.table_info({table})")]
                select = ", ".join(f"{c} || '.{k}'" if c in ids else c for c in columns)
                db.execute(f"INSERT INTO main.{table} ({', '.join(columns)}) "
                           f"SELECT {select} FROM t.{table} ORDER BY rowid" if table != "messages"
                           else f"INSERT INTO main.{table} ({', '.join(columns)}) "
                           f"SELECT {select} FROM t.{table}")
        db.commit()
        db.execute("DETACH DATABASE t")
        counts = _counts(db)
        db.close()
    return {**counts, "seconds": time.perf_counter() - started,
            "mib": os.path.getsize(path) / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("path")
    parser.add_argument("--events", type=int, default=100_000)
    args = parser.parse_args()
    if os.path.exists(args.path):
        raise SystemExit(f"{args.path} exists; give a new path")
    print(build(args.path, args.events))


if __name__ == "__main__":
    main()
