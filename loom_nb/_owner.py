"""Which process runs a run, and whether that process is still alive.

A run record names its owner when it becomes ``running``: the process id, the process's start
time and the host (with the host's boot id). A process id alone is not enough: after the owner
dies the id can be given to another process, so a live pid proves nothing unless the start time
matches too. Liveness can only be judged on the owner's own host (and boot): anything else is
``"unknown"``, and an unknown owner is never treated as dead.
"""

from __future__ import annotations

import functools
import os
import socket
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

__all__ = ["Liveness", "RunOwner", "current_owner", "liveness"]

Liveness: TypeAlias = Literal["alive", "dead", "unknown"]
_BOOT_ID = "/proc/sys/kernel/random/boot_id"


@dataclass(frozen=True)
class RunOwner:
    """The process that runs a run: ``start`` is its start time as ``"<clock>:<value>"`` (None
    where no clock is available), ``boot`` the host's boot id and ``pidns`` its pid namespace
    (None off Linux): two containers may share a host name and a kernel but not their pids."""

    pid: int
    host: str
    start: str | None = None
    boot: str | None = None
    pidns: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pid": self.pid, "host": self.host, "start": self.start, "boot": self.boot,
                "pidns": self.pidns}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunOwner:
        return cls(pid=int(data["pid"]), host=str(data["host"]), start=data.get("start"),
                   boot=data.get("boot"), pidns=data.get("pidns"))

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


@functools.cache
def _this_process(pid: int) -> RunOwner:
    # Keyed by pid: a forked child must not inherit its parent's identity from the cache.
    return RunOwner(pid=pid, host=socket.gethostname(), start=_start_time(pid), boot=_boot_id(),
                    pidns=_pid_namespace())


def current_owner() -> RunOwner:
    """This process, as a run record names it."""
    return _this_process(os.getpid())


def liveness(owner: RunOwner) -> Liveness:
    """Whether ``owner`` still runs: ``"dead"`` only when that is certain."""
    here = current_owner()
    if owner.host != here.host or owner.pidns != here.pidns:
        return "unknown"  # another machine (or container) whose processes cannot be seen
    if owner.boot != here.boot:
        # The same host booted since: every process of the old boot is gone.
        return "dead" if owner.boot and here.boot else "unknown"
    if owner.pid == here.pid:
        return "alive" if owner.start == here.start else "dead"
    try:
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return "dead"
    except PermissionError:
        pass  # it exists, under another user
    except OSError:
        return "unknown"
    if owner.start is None:
        return "alive"  # a live pid and nothing to tell a reused one by: assume it is the owner
    start = _start_time(owner.pid, clock=owner.start.partition(":")[0])
    if start is None:
        # Gone between the two checks, or a zombie (killed, not yet reaped): dead. A clock this
        # process cannot read (psutil missing here) tells nothing.
        return "dead" if _clock_available(owner.start) else "unknown"
    return "alive" if start == owner.start else "dead"


def _start_time(pid: int, clock: str | None = None) -> str | None:
    """``"<clock>:<value>"`` for a live (non-zombie) process, else None. /proc first (no import,
    Linux), psutil where there is no /proc (an optional extra: imported only then)."""
    if clock in (None, "proc") and os.path.exists("/proc/self/stat"):
        try:
            with open(f"/proc/{pid}/stat", "rb") as stat:
                text = stat.read().decode("ascii", "replace")
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
        fields = text.rpartition(")")[2].split()
        if len(fields) < 20 or fields[0] in ("Z", "X"):  # zombie or dead: it runs no more
            return None
        return f"proc:{fields[19]}"  # field 22, starttime in clock ticks since boot
    if clock in (None, "psutil"):
        try:
            import psutil
        except ImportError:
            return None
        try:
            process = psutil.Process(pid)
            if process.status() == psutil.STATUS_ZOMBIE:
                return None
            return f"psutil:{process.create_time():.2f}"
        except psutil.Error:
            return None
    return None


def _clock_available(start: str) -> bool:
    clock = start.partition(":")[0]
    if clock == "proc":
        return os.path.exists("/proc/self/stat")
    if clock == "psutil":
        import importlib.util
        return importlib.util.find_spec("psutil") is not None
    return False


def _pid_namespace() -> str | None:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def _boot_id() -> str | None:
    try:
        with open(_BOOT_ID, encoding="ascii") as f:
            return f.read().strip() or None
    except OSError:
        return None
