from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.backends import Backend
from tests.pg_server import INSTALL_HINT, PostgresServer, find_bindir, start_server


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(autouse=True)
def _no_loom_model(monkeypatch: pytest.MonkeyPatch) -> None:
    # A developer's LOOM_MODEL must not turn offline tests into real model calls.
    monkeypatch.delenv("LOOM_MODEL", raising=False)


# -- the stores a test runs against ---------------------------------------------------------------
# A test that takes `backend` runs once on an SQLite file and once on a PostgreSQL database (a
# real server, started once per test session by `postgres_server`).



@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    # Skipped only where the binaries cannot be had; a server that is there but fails to start
    # is an error, not a skip.
    if find_bindir() is None:
        pytest.skip(f"PostgreSQL is not installed: {INSTALL_HINT}")
    if os.geteuid() == 0:
        import pwd
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip(f"running as root without a 'postgres' user for the server: {INSTALL_HINT}")
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the test server."""
    return postgres_server.new_database()


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        found = Backend("sqlite", str(tmp_path / "s.sqlite"))
    else:
        found = Backend("postgres", request.getfixturevalue("postgres_dsn"))
    yield found
    found.close()


@pytest.fixture
def http_process():
    """Start a loopback HTTP server process on a free port and wait until the port accepts
    connections: ``port, process = http_process(command, env=None)``, where ``{port}`` in the
    command's words and the env's values is the port. Every process started is killed after."""
    import socket
    import subprocess
    import time

    started: list[subprocess.Popen] = []

    def start(command: list[str], env: dict[str, str] | None = None,
              seconds: float = 30.0) -> tuple[int, subprocess.Popen]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        command = [word.replace("{port}", str(port)) for word in command]
        if env is not None:
            env = {k: v.replace("{port}", str(port)) for k, v in env.items()}
        process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        started.append(process)
        deadline = time.monotonic() + seconds
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return port, process
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    process.kill()
                    err = process.communicate()[1].decode(errors="replace")[-2000:]
                    raise RuntimeError(f"{command[0]} did not serve on port {port}: {err}") from None
                time.sleep(0.05)

    yield start
    for process in started:
        process.kill()
        process.wait()
