"""A real PostgreSQL server for the tests: Debian's binaries, a data directory of its own in a
temporary folder, a free loopback port, stopped at the end of the test session.

``initdb`` and ``postgres`` refuse to run as root, and CI runs as root: there the server runs as
the ``postgres`` user that Debian's package creates (``runuser -u postgres``), in a folder given
to that user. Every step is bounded in time, so a server that does not come up fails the fixture
in seconds instead of hanging the suite. Where the binaries cannot be had, :func:`find_bindir`
says so and the tests that need a server skip with the install command.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = "apt-get install -y postgresql (Debian's package; .ci/run installs it when missing)"
#: Debian installs the server binaries outside PATH, one folder per major version.
_DEBIAN_BINDIRS = "/usr/lib/postgresql/*/bin"


def find_bindir() -> Path | None:
    """The folder with initdb and pg_ctl (the newest Debian version first), or None."""
    candidates = sorted(glob.glob(_DEBIAN_BINDIRS), key=lambda p: int(Path(p).parent.name)
                        if Path(p).parent.name.isdigit() else 0, reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for folder in candidates:
        if (Path(folder) / "initdb").is_file() and (Path(folder) / "pg_ctl").is_file():
            return Path(folder)
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server; :meth:`new_database` gives each test a database of its own."""

    bindir: Path
    root: Path
    port: int
    user: str | None  # the OS user the server runs as (None: the current one)
    databases: list[str] = field(default_factory=list)
    watchdog: subprocess.Popen[bytes] | None = None

    @property
    def data(self) -> Path:
        return self.root / "data"

    def dsn(self, database: str = "postgres") -> str:
        return f"postgresql://loom@127.0.0.1:{self.port}/{database}"

    def _run(self, *argv: str, timeout: float) -> subprocess.CompletedProcess[str]:
        # stdin closed: a server started here must not hold this process's pipes open.
        return subprocess.run(self._command(*argv), capture_output=True, text=True,
                              timeout=timeout, check=False, stdin=subprocess.DEVNULL)

    def _command(self, *argv: str) -> list[str]:
        command = [str(self.bindir / argv[0]), *argv[1:]]
        return ["runuser", "-u", self.user, "--", *command] if self.user is not None else command

    def start(self) -> None:
        done = self._run("initdb", "-D", str(self.data), "-U", "loom", "--auth=trust", "-E",
                         "UTF8", "--no-sync", "--no-instructions", timeout=180)
        if done.returncode:
            raise RuntimeError(f"initdb failed: {done.stderr or done.stdout}")
        for attempt in range(3):  # the free port may be taken between the probe and the start
            # fsync off: the tests' durability is across processes, not across a power cut.
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} -c fsync=off "
                       f"-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
            log = self.root / "server.log"
            done = self._run("pg_ctl", "start", "-D", str(self.data), "-w", "-t", "60", "-o",
                             options, "-l", str(log), timeout=90)
            if not done.returncode:
                break
            text = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            if "could not bind" not in text or attempt == 2:
                raise RuntimeError(f"pg_ctl start failed: {done.stderr or done.stdout}\n{text}")
            self.port = _free_port()
        self.watchdog = self._watch()

    def _watch(self) -> subprocess.Popen[bytes]:
        """A process that stops the server and removes its folder when this one goes away, even
        by kill -9: it waits for the end of a pipe only this process holds."""
        stop = self._command("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w",
                             "-t", "30")
        code = (f"import shutil, subprocess, sys; sys.stdin.buffer.read(); "
                f"subprocess.run({stop!r}, capture_output=True, timeout=60); "
                f"shutil.rmtree({str(self.root)!r}, ignore_errors=True)")
        return subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)

    def new_database(self) -> str:
        """A fresh, empty database; its DSN."""
        import psycopg

        name = f"t_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True, connect_timeout=10) as db:
            # FILE_COPY: with fsync off, copying the small template is faster than WAL_LOG.
            db.execute(f"CREATE DATABASE {name} STRATEGY FILE_COPY")
        self.databases.append(name)
        return self.dsn(name)

    def stop(self) -> None:
        try:
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate", "-w", "-t", "30",
                      timeout=60)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self.watchdog is not None:  # its pipe's end: it finds the server gone, and ends
                assert self.watchdog.stdin is not None
                self.watchdog.stdin.close()
                self.watchdog.wait(60)


def start_server() -> PostgresServer:
    """Start a server, or raise RuntimeError saying why it cannot be started here."""
    bindir = find_bindir()
    if bindir is None:
        raise RuntimeError(f"PostgreSQL's server binaries (initdb, pg_ctl) are not installed: "
                           f"{INSTALL_HINT}")
    user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise RuntimeError("running as root, and there is no 'postgres' user to run the "
                               f"server as (initdb refuses root): {INSTALL_HINT}") from None
        user = "postgres"
    # Not pytest's tmp_path: its folders are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="loom-pg-"))
    if user is not None:
        shutil.chown(root, user)
    server = PostgresServer(bindir, root, _free_port(), user)
    try:
        server.start()
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    return server
