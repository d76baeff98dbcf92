"""The supervisor between Capability.shell and ``/bin/sh``: nothing a command starts outlives it.

Run as a script, ``python -I _reaper.py STATUS_FD PARENT_PID GRACE -- /bin/sh -c COMMAND``, in a
session of its own. It stays standard-library only because ``-I`` keeps loom_nb off its path.

On Linux it makes itself a *child subreaper* (``prctl(PR_SET_CHILD_SUBREAPER)``), so every
process the command orphans (``setsid cmd &``, a double fork, ``nohup``, ``disown``) is re-parented
to it instead of to init and stays in its tree of descendants, which it reads from ``/proc``. When
the shell exits it waits ``GRACE`` seconds for that tree to finish, then SIGKILLs and reaps all
of it; on SIGTERM (a timeout or a cancel in loom_nb, or loom_nb's death through
``PR_SET_PDEATHSIG``) it does the same at once. It then writes one line to ``STATUS_FD``:
``exit <wait status> <1 if it had to kill leftovers, else 0>`` or ``stopped``.

Elsewhere (macOS, BSD) there is no subreaper: it kills the shell's process group and the
descendants psutil can still see (when psutil is installed); a process that left the group and
lost its parent is out of reach there.
"""

from __future__ import annotations

import os
import signal
import sys
import time

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_LINUX = sys.platform.startswith("linux")
# A tree that still has live members after this long is made of processes SIGKILL cannot stop
# (uninterruptible sleep): report what is known instead of hanging the call.
_KILL_PATIENCE = 5.0
# Python ignores these at start-up and an ignored disposition survives exec: restore the defaults
# so that `yes | head` ends as it does in a terminal.
_DEFAULT_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class _Stop(Exception):
    """SIGTERM: stop the command and everything it started, now."""


def _on_term(signum: int, frame: object) -> None:
    raise _Stop


def _prctl(option: int, value: int) -> bool:
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        args = (ctypes.c_ulong(0),) * 3
        return libc.prctl(ctypes.c_int(option), ctypes.c_ulong(value), *args) == 0
    except (OSError, AttributeError):
        return False


def process_table() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, session id, state) for every process visible in ``/proc``."""
    table: dict[int, tuple[int, int, str]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                stat = handle.read()
        except OSError:  # it ended while the table was read
            continue
        # The name field is in parentheses and may itself contain ") ": split at the last one.
        fields = stat.rsplit(b")", 1)[1].split()
        table[int(name)] = (int(fields[1]), int(fields[3]), fields[0].decode())
    return table


def descendants(root: int) -> dict[int, str]:
    """pid -> state of every process below ``root`` (zombies included, state ``Z``)."""
    if not _LINUX:
        return _psutil_descendants(root)
    table = process_table()
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found: dict[int, str] = {}
    todo = list(children.get(root, ()))
    while todo:
        pid = todo.pop()
        if pid not in found:
            found[pid] = table[pid][2]
            todo.extend(children.get(pid, ()))
    return found


def _psutil_descendants(root: int) -> dict[int, str]:
    try:
        import psutil
    except ImportError:  # only the process group is then within reach
        return {}
    try:
        procs = psutil.Process(root).children(recursive=True)
    except psutil.Error:
        return {}
    return {p.pid: "Z" if _is_zombie(p) else "R" for p in procs}


def _is_zombie(proc: object) -> bool:
    import psutil

    try:
        return proc.status() == psutil.STATUS_ZOMBIE  # type: ignore[attr-defined]
    except psutil.Error:
        return True


def session_members(session: int) -> list[int]:
    """Live processes of ``session`` (Linux): what is left to kill when the supervisor is gone."""
    if not _LINUX:
        return []
    return [pid for pid, (_, sid, state) in process_table().items()
            if sid == session and state != "Z"]


def kill_tree(root: int, group: int | None, *, reap: bool) -> bool:
    """SIGKILL every descendant of ``root`` (and ``group``) until none is left; True if any lived.

    It goes round until the tree is empty: a process forked between a listing and the kill is
    orphaned by the kill, re-parented to ``root`` (the subreaper) and found the next time round.
    With ``reap`` (``root`` is this process), the dead are reaped, so that they leave the tree.
    """
    killed = False
    give_up = time.monotonic() + _KILL_PATIENCE
    while True:
        if group is not None:
            killed |= _signal_group(group)
        tree = descendants(root)
        live = [pid for pid, state in tree.items() if state != "Z"]
        for pid in live:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        killed |= bool(live)
        has_children = _reap_all() if reap else bool(live)
        if not live and not has_children or time.monotonic() > give_up:
            return killed
        time.sleep(0.002)


def _signal_group(group: int) -> bool:
    try:
        os.killpg(group, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _reap_all() -> bool:
    """Reap every child that has ended; True if children remain."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _settle(grace: float) -> None:
    """Give what the shell left in the background ``grace`` seconds to end by itself."""
    end = time.monotonic() + grace
    while time.monotonic() < end:
        has_children = _reap_all()
        if not has_children and not any(s != "Z" for s in descendants(os.getpid()).values()):
            return
        time.sleep(0.01)


def _supervise(argv: list[str], grace: float) -> str:
    try:
        shell = os.posix_spawn(argv[0], argv, os.environ, setpgroup=0,
                               setsigdef=_DEFAULT_SIGNALS)
    except OSError as exc:
        return f"error cannot start {argv[0]}: {exc.strerror}"
    # On Linux the tree holds every descendant; the group is only needed where it does not. Once
    # the shell is reaped its pid (the group id) may be reused, so it is not signalled there.
    group = None if _LINUX else shell
    status = 0
    try:
        _, status = os.waitpid(shell, 0)
        _settle(grace)
    except _Stop:
        kill_tree(os.getpid(), group, reap=True)
        return "stopped"
    lingering = kill_tree(os.getpid(), group, reap=True)
    return f"exit {status} {int(lingering)}"


def main(args: list[str]) -> int:
    status_fd, parent, grace = int(args[0]), int(args[1]), float(args[2])
    argv = args[args.index("--") + 1:]
    os.set_inheritable(status_fd, False)  # the command must not be able to forge the report
    signal.signal(signal.SIGTERM, _on_term)
    signal.signal(signal.SIGHUP, _on_term)
    if _LINUX:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    report = "stopped"
    try:
        if os.getppid() == parent:  # else loom_nb died before the death signal was armed
            report = _supervise(argv, grace)
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the cleanup itself is not interrupted
        kill_tree(os.getpid(), None, reap=True)
        try:
            os.write(status_fd, f"{report}\n".encode())
        except OSError:  # loom_nb is gone and no longer reads it
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
