"""What only a PostgreSQL store has: a server that may be unreachable, a DSN with a password, a
schema written by a newer loom_nb, psycopg missing, many threads sharing one pool, NUL in free
text. (What both stores share runs in the parametrised tests: the `backend` fixture.)"""

from __future__ import annotations

import sys
import threading

import pytest

from loom_nb import Agent, Model, SessionConfig, StoreError
from loom_nb.events import RunEvent
from loom_nb.store import PostgresStore, RunRecord, open_store

NOWHERE = "postgresql://loom:s3cret-password@127.0.0.1:1/none"


def test_an_unreachable_server_is_a_store_error_that_says_what_to_check() -> None:
    with pytest.raises(StoreError) as caught:
        PostgresStore(NOWHERE, connect_timeout=2)
    message = str(caught.value)
    assert "postgresql://loom@127.0.0.1:1/none" in message and "could not open the store" in message
    assert "Check that it is running" in message and "pg_isready" in message
    assert "s3cret" not in message  # the password is never shown
    with pytest.raises(StoreError, match="cannot be reached"):
        Agent(Model.scripted([])).session(SessionConfig(store="postgres://loom@127.0.0.1:1/none"))


def test_a_schema_written_by_a_newer_loom_nb_is_refused(postgres_dsn: str) -> None:
    PostgresStore(postgres_dsn).close()
    import psycopg
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE loom_schema SET version = 99")
    with pytest.raises(StoreError, match=r"written by a newer loom_nb \(schema 99\); upgrade"):
        PostgresStore(postgres_dsn)


def test_without_psycopg_the_error_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(StoreError, match=r"pip install 'loom-nb\[postgres\]'"):
        PostgresStore("postgresql://localhost/x")
    with pytest.raises(StoreError, match=r"pip install 'loom-nb\[postgres\]'"):
        open_store("postgresql://localhost/elsewhere")
    with pytest.raises(StoreError, match="takes a DSN such as"):
        monkeypatch.delitem(sys.modules, "psycopg")
        PostgresStore("")


def test_a_closed_store_says_so(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="this store object was closed"):
        store.sessions()


def test_a_row_that_no_longer_decodes_is_a_store_error(postgres_dsn: str) -> None:
    session = Agent(Model.scripted(["hi"])).session(SessionConfig(id="d", store=postgres_dsn))
    session.run_sync("hello")
    import psycopg
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("UPDATE runs SET usage = 'not json'")
    with pytest.raises(StoreError, match="no longer decodes.*Repair or delete that row") as caught:
        PostgresStore(postgres_dsn).runs("d")
    assert isinstance(caught.value.__cause__, ValueError)


def test_threads_share_one_store_and_its_pool(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn, max_connections=3)
    errors: list[BaseException] = []

    def write(n: int) -> None:
        try:
            run_id = f"run_{n}"
            store.save_run(RunRecord(run_id=run_id, session_id="threads", agent="a", model="m",
                                     prompt=str(n)))
            store.append_events([RunEvent(type="run.started", run_id=run_id, session_id="threads",
                                          seq=i) for i in range(50)])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(store.runs("threads")) == 12 and len(store.events(session_id="threads")) == 600
    assert [e.seq for e in store.events(run_id="run_3")] == list(range(50))


def test_nul_in_free_text_is_stored(postgres_dsn: str) -> None:
    session = Agent(Model.scripted(["out\x00put"])).session(SessionConfig(id="n", store=postgres_dsn))
    result = session.run_sync("in\x00put")
    assert result.status == "completed" and result.output == "out\x00put"
    (record,) = PostgresStore(postgres_dsn).runs("n")
    assert (record.prompt, record.output) == ("in\ufffdput", "out\ufffdput")
    history = PostgresStore(postgres_dsn).open_session("n", {}).messages
    assert [m.text for m in history] == ["in\x00put", "out\x00put"]  # the history keeps them


def test_sessions_are_listed_in_the_order_they_were_created(postgres_dsn: str) -> None:
    store = PostgresStore(postgres_dsn)
    for name in ["b", "a", "c"]:
        store.open_session(name, {"n": name})
    assert store.sessions() == ["b", "a", "c"]
    again = store.open_session("a", {"extra": 1})
    assert again.restored and again.metadata == {"n": "a", "extra": 1}
    assert PostgresStore(postgres_dsn).open_session("a", {}).metadata == {"n": "a", "extra": 1}


def test_a_session_goes_on_across_a_server_restart(postgres_server) -> None:  # noqa: ANN001
    import time

    from tests.pg_server import start_server

    from loom_nb.store.postgres import IDLE_CHECK_SECONDS

    del postgres_server  # (needed only to skip where there is no server)
    server = start_server()  # its own: restarting the shared one would disturb other tests
    try:
        store = PostgresStore(server.new_database())
        session = Agent(Model.function(lambda r: "ok")).session(SessionConfig(id="r", store=store))
        assert session.run_sync("before").status == "completed"
        restarted = server._run("pg_ctl", "restart", "-D", str(server.data), "-m", "fast", "-w",
                                "-t", "60", "-l", str(server.root / "server.log"), timeout=90)
        assert restarted.returncode == 0, restarted.stderr
        time.sleep(IDLE_CHECK_SECONDS + 0.2)  # the pooled connection is now idle long enough
        # ...to be checked: the pool replaces the dead connection, and no write fails.
        after = session.run_sync("after")
        assert after.status == "completed", after.error
        assert [r.status for r in store.runs("r")] == ["completed", "completed"]
    finally:
        server.stop()


def test_a_dropped_store_gives_its_connections_back(postgres_dsn: str) -> None:
    import gc

    for _ in range(10):
        PostgresStore(postgres_dsn).sessions()
    gc.collect()
    import psycopg
    with psycopg.connect(postgres_dsn) as db:
        (count,) = db.execute("SELECT count(*) FROM pg_stat_activity "
                              "WHERE datname = current_database()").fetchone()  # type: ignore[misc]
    assert count == 1  # this one


def test_a_user_without_create_opens_an_existing_store_and_one_without_insert_is_told(
        postgres_dsn: str) -> None:
    import psycopg

    PostgresStore(postgres_dsn).close()  # made by its owner
    base, database = postgres_dsn.rsplit("/", 1)
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        for role in ("loom_rw", "loom_ro"):
            db.execute(f"DROP ROLE IF EXISTS {role}")  # (roles are the server's, not the database's)
            db.execute(f"CREATE ROLE {role} LOGIN")
            db.execute(f"GRANT CONNECT ON DATABASE {database} TO {role}")
            db.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        db.execute("GRANT SELECT, INSERT, UPDATE ON ALL TABLES IN SCHEMA public TO loom_rw")
        db.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO loom_ro")
    as_role = base.replace("//loom@", "//{}@") + "/" + database
    writer = as_role.format("loom_rw")
    session = Agent(Model.scripted(["ok"])).session(SessionConfig(id="granted", store=writer))
    assert session.run_sync("hello").status == "completed"
    reader = PostgresStore(as_role.format("loom_ro"))
    assert [r.status for r in reader.runs("granted")] == ["completed"]
    with pytest.raises(StoreError, match="may not read or write loom_nb's tables. GRANT"):
        reader.open_session("new", {})
    for store in (reader, session.store):
        store.close()
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP OWNED BY loom_rw, loom_ro")
        db.execute("DROP ROLE loom_rw")
        db.execute("DROP ROLE loom_ro")


def test_a_store_in_a_schema_of_its_own_via_the_dsn(postgres_dsn: str) -> None:
    import psycopg

    from loom_nb.export import runs_df
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("CREATE SCHEMA loom")
    in_schema = postgres_dsn + "?options=-csearch_path%3Dloom"
    Agent(Model.scripted(["ok"])).session(SessionConfig(id="s", store=in_schema)).run_sync("hi")
    with psycopg.connect(postgres_dsn) as db:
        (where,) = db.execute("SELECT table_schema FROM information_schema.tables "
                              "WHERE table_name = 'runs'").fetchone()  # type: ignore[misc]
    assert where == "loom"
    assert list(runs_df(in_schema).output) == ["ok"]  # the frames read the same schema


def test_a_statement_slower_than_statement_timeout_fails_instead_of_hanging_the_run(
        postgres_dsn: str) -> None:
    import psycopg

    store = PostgresStore(postgres_dsn, statement_timeout=0.2)
    session = Agent(Model.function(lambda r: "ok")).session(SessionConfig(id="slow", store=store))
    assert session.run_sync("before").status == "completed"
    with psycopg.connect(postgres_dsn, autocommit=True) as db:  # a server that stalls on writes
        db.execute("CREATE FUNCTION stall() RETURNS trigger AS $$ BEGIN PERFORM pg_sleep(5); "
                   "RETURN NEW; END $$ LANGUAGE plpgsql")
        db.execute("CREATE TRIGGER stall BEFORE INSERT ON messages FOR EACH ROW "
                   "EXECUTE FUNCTION stall()")
    result = session.run_sync("stalled")
    assert (result.status, result.error_type) == ("failed", "StoreError")
    assert "took longer than 0.2 s (statement_timeout)" in (result.error or "")
    with psycopg.connect(postgres_dsn, autocommit=True) as db:
        db.execute("DROP TRIGGER stall ON messages")
    assert session.run_sync("after").status == "completed"
