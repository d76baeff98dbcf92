"""Capability.shell: run shell commands in a directory, with a timeout and an output cap.

One tool, ``shell__run(command, timeout=None)`` (``name`` defaults to ``"shell"``). The command
runs with ``/bin/sh -c`` in ``cwd``, stdin closed, under a small supervisor process
(``_reaper.py``) in a session of its own. The result says the exit code and gives stdout and
stderr, each capped at ``max_output_bytes`` (the start and the end are kept, the middle is marked
as omitted). When the time runs out the command is killed and the model gets an error result with
the output so far.

Confinement (issue 15):

- Environment: a command sees only harmless variables (``_SAFE_ENV`` and ``LC_*``), those named in
  ``inherit_env``, and ``env``; API keys and other secrets of the notebook are not passed on.
- Processes: nothing a command starts outlives the call. On Linux the supervisor is a child
  subreaper, so background, ``setsid``, double-forked, ``nohup`` and ``disown``-ed processes stay
  below it and are killed when the shell exits (after ``_DRAIN_GRACE``), on timeout and on
  cancellation. Elsewhere the process group and what psutil still sees are killed (see _reaper).
- Commands: ``ask_before([...])`` and ``deny_commands([...])`` are governance vetoes that parse
  the command line (see ``_commands``).

Governance and approval (decided here, on purpose):

- ``requires_approval=require_approval``: with the default ``True``, every call pauses the run
  (``status="needs_approval"``) until a person approves it; nothing runs before that.
- The tool is *not* ``read_only`` (governance read-only mode denies it) and *not* marked
  ``destructive``. A shell can of course destroy data; but default governance asks before
  destructive tools, so a destructive flag would make ``require_approval=False`` mean nothing: the
  person who passes it expects commands to run without a prompt, and that is what happens. The one
  knob for asking is ``require_approval``; for finer rules (ask only for some commands, deny
  others) use ``GovernancePolicy(vetoes=[ask_before([...])])`` or a veto of your own.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotSupportedError, ToolError
from ..tools import tool
from . import Capability, _reaper
from ._commands import CommandScan, ask_before, deny_commands, scan_command

__all__ = ["CommandScan", "ask_before", "deny_commands", "scan_command", "shell_capability"]

# After the shell exits, what it started in the background gets this long to end by itself
# (`(sleep 0.2; echo late) &`); then it is killed, so that nothing outlives the call.
_DRAIN_GRACE = 0.5
# How long the supervisor may take to kill the command's processes before they are killed from
# here; it takes milliseconds unless the command stopped it.
_STOP_PATIENCE = 5.0
# Variables that configure a command without granting anything: no keys, tokens, sockets
# (SSH_AUTH_SOCK), loader or interpreter hooks (LD_PRELOAD, BASH_ENV, ENV, PYTHONPATH).
_SAFE_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TERM", "TZ",
             "TMPDIR")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def shell_capability(cwd: str | os.PathLike[str] = ".", require_approval: bool = True, *,
                     name: str = "shell", timeout: float = 30, max_timeout: float = 600,
                     max_output_bytes: int = 30_000, env: Mapping[str, str] | None = None,
                     inherit_env: Sequence[str] = (), **unknown: Any) -> Capability:
    """The shell capability (see the module docstring); ``Capability.shell`` calls this.

    Args:
        cwd: the directory commands run in.
        require_approval: every call waits for a person's approval.
        name: the capability's name; the tool is ``{name}__run``.
        timeout: seconds a command may run unless the model asks for another limit.
        max_timeout: the longest limit the model may ask for.
        max_output_bytes: how much of stdout and of stderr each is returned.
        env: variables set for every command (they win over inherited ones).
        inherit_env: names of notebook variables passed on as well (when set).
    """
    if unknown:
        raise ConfigError(f"Capability.shell() got unknown options {sorted(unknown)}; it takes "
                          f"cwd, require_approval, name, timeout, max_timeout, max_output_bytes, "
                          f"env, inherit_env.")
    _check_platform()
    folder = Path(cwd).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"Capability.shell(cwd={str(cwd)!r}): no such directory. Create it or "
                          f"pass an existing directory (for example cwd='.').")
    for option, value in (("timeout", timeout), ("max_timeout", max_timeout),
                          ("max_output_bytes", max_output_bytes)):
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"Capability.shell({option}=...) takes a number > 0, got {value!r}.")
    runner = _Shell(str(folder.resolve()), f"{name}__run", float(timeout),
                    max(float(max_timeout), float(timeout)), int(max_output_bytes),
                    _checked_env(env), _checked_names(inherit_env))
    run = tool(name=runner.tool_name, requires_approval=require_approval)(runner.tool_function())
    approval = " Each command waits for a person's approval before it runs." \
        if require_approval else ""
    instructions = (f"{runner.tool_name}(command) runs a command with /bin/sh -c in "
                    f"{runner.cwd!r} and returns the exit code, stdout and stderr; it is killed "
                    f"after {timeout:g} s unless you pass a longer timeout (at most "
                    f"{runner.max_timeout:g} s). Commands cannot read input, and processes they "
                    f"leave in the background are stopped when they end.{approval}")
    return Capability(name=name, toolset=(run,), kind="shell", instructions=instructions)


def _check_platform() -> None:
    if os.name != "posix":
        raise NotSupportedError("Capability.shell needs a POSIX system (/bin/sh and process "
                                "groups); on Windows, wrap the commands you need in plain "
                                "functions and pass them with Capability.tools(...).")
    if not sys.executable:
        raise NotSupportedError("Capability.shell runs each command under a Python supervisor "
                                "and cannot find this Python (sys.executable is empty); run the "
                                "notebook with a regular Python installation.")
    if not sys.platform.startswith("linux"):
        try:
            import psutil  # noqa: F401  (the supervisor finds descendants with it off Linux)
        except ImportError:
            warnings.warn("Capability.shell: without psutil, only the process group of a "
                          "command is stopped on this system; processes that leave it may "
                          "outlive the call. Install it with pip install 'loom-nb[shell]'.",
                          RuntimeWarning, stacklevel=3)


def _checked_env(env: Mapping[str, str] | None) -> dict[str, str]:
    if env is None:
        return {}
    if not isinstance(env, Mapping):
        raise ConfigError(f"Capability.shell(env=...) takes a dict of names to strings, got "
                          f"{type(env).__name__}.")
    for key, value in env.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise ConfigError(f"Capability.shell(env=...): {key!r} is not a variable name; use "
                              f"letters, digits and _ (e.g. env={{'PROJECT_MODE': 'test'}}).")
        if not isinstance(value, str) or "\0" in value:
            raise ConfigError(f"Capability.shell(env=...): the value of {key} must be a string "
                              f"without NUL bytes, got {value!r}; write numbers as '1'.")
    return dict(env)


def _checked_names(names: Sequence[str]) -> tuple[str, ...]:
    if isinstance(names, str) or not all(isinstance(n, str) and _ENV_NAME.match(n)
                                          for n in names):
        raise ConfigError(f"Capability.shell(inherit_env=...) takes a list of variable names, "
                          f"e.g. inherit_env=['AWS_PROFILE'], got {names!r}.")
    return tuple(names)


class _Shell:
    def __init__(self, cwd: str, tool_name: str, timeout: float, max_timeout: float,
                 max_output: int, env: dict[str, str], inherit_env: tuple[str, ...]) -> None:
        self.cwd = cwd
        self.tool_name = tool_name
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.max_output = max_output
        self.env = env
        self.inherit_env = inherit_env

    def tool_function(self) -> Any:
        shell = self

        async def run(command: str, timeout: int | None = None) -> str:
            return await shell.run(command, timeout)

        run.__doc__ = (
            f"Run a shell command with /bin/sh -c in {self.cwd} and return its exit code and "
            f"output.\n\nArgs:\n    command: the command line, as typed in a POSIX shell.\n"
            f"    timeout: seconds before the command is killed (default {self.timeout:g}, at "
            f"most {self.max_timeout:g}).\n")
        return run

    def environment(self) -> dict[str, str]:
        """What a command sees: the harmless variables, the inherited ones, then ``env``.

        Read at each call, so that a PATH or locale changed in the notebook applies."""
        names = set(_SAFE_ENV) | set(self.inherit_env)
        env = {k: v for k, v in os.environ.items() if k in names or k.startswith("LC_")}
        env.setdefault("PATH", os.defpath)
        return env | self.env

    async def run(self, command: str, timeout: int | None) -> str:
        if not command.strip():
            raise ToolError(f"{self.tool_name}: the command is empty; pass a command to run.")
        if "\0" in command:
            raise ToolError(f"{self.tool_name}: the command contains a NUL byte, which no shell "
                            f"can take; remove it.")
        if timeout is not None and timeout <= 0:
            raise ToolError(f"{self.tool_name}: timeout is in seconds and must be 1 or more.")
        seconds = min(float(timeout), self.max_timeout) if timeout else self.timeout
        read_fd, write_fd = os.pipe()  # the supervisor's report; not inherited by the command
        try:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-I", _reaper.__file__, str(write_fd), str(os.getpid()),
                str(_DRAIN_GRACE), "--", "/bin/sh", "-c", command,
                cwd=self.cwd, env=self.environment(), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, pass_fds=(write_fd,))
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        try:
            return await self._supervise(proc, read_fd, seconds)
        finally:
            os.close(read_fd)

    async def _supervise(self, proc: asyncio.subprocess.Process, read_fd: int,
                         seconds: float) -> str:
        out, err = _Capture(self.max_output), _Capture(self.max_output)
        readers = [asyncio.create_task(out.drain(proc.stdout)),
                   asyncio.create_task(err.drain(proc.stderr))]
        deadline = asyncio.get_running_loop().time() + seconds
        try:
            timed_out = not await _wait_for_exit(proc, readers, deadline)
            if timed_out:
                await _stop(proc)
            # The supervisor took the command's processes with it: the pipes close now, unless
            # one escaped it (see _reaper) and holds them; never wait long for that one.
            await asyncio.wait(readers, timeout=_DRAIN_GRACE)
        finally:
            if proc.returncode is None:  # the call was cancelled: leave nothing running
                await _stop(proc)
            for reader in readers:
                reader.cancel()
        output = _sections(out, err)
        if timed_out:
            raise ToolError(f"{self.tool_name}: the command timed out after {seconds:g} s and was "
                            f"killed. Output before that:\n{output}\nRun it with a longer "
                            f"timeout, or make it do less at once.")
        return self._result(proc, _read_report(read_fd), output)

    def _result(self, proc: asyncio.subprocess.Process, report: list[str], output: str) -> str:
        if report[:1] == ["exit"] and len(report) == 3:
            status = _exit_text(os.waitstatus_to_exitcode(int(report[1])))
            if report[2] == "1":
                status += " (background processes it left running were stopped)"
            return f"{status}\n{output}"
        if report[:1] == ["error"]:
            raise ToolError(f"{self.tool_name}: {' '.join(report[1:])}. Check that /bin/sh "
                            f"exists and that {self.cwd!r} is still a directory.")
        # No report: the command killed its supervisor (it runs as the same user). What stayed in
        # its session is killed here; what left the session as well cannot be found any more.
        for pid in _reaper.session_members(proc.pid):
            _signal(pid, signal.SIGKILL)
        raise ToolError(f"{self.tool_name}: the command killed the supervisor process that runs "
                        f"it ({_exit_text(proc.returncode)}); its processes were stopped. Output "
                        f"before that:\n{output}\nDo not signal the parent process ($PPID).")


async def _wait_for_exit(proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]],
                         deadline: float) -> bool:
    """Whether the supervisor exited before ``deadline``.

    ``proc.wait()`` also waits for the pipes, which an escaped process could hold open for
    ever; ``proc.returncode`` is set as soon as the supervisor exits, so it is polled instead,
    between waits on the readers (they end when the supervisor does).
    """
    loop = asyncio.get_running_loop()
    while proc.returncode is None:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return False
        _, pending = await asyncio.wait(readers, timeout=min(remaining, 0.05))
        if not pending:
            return await _exited(proc, deadline - loop.time())
    return True


async def _exited(proc: asyncio.subprocess.Process, seconds: float) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds
    while proc.returncode is None and loop.time() < end:
        await asyncio.sleep(0.005)
    return proc.returncode is not None


async def _stop(proc: asyncio.subprocess.Process) -> None:
    """Have the supervisor kill the command's processes and exit; kill them from here if not."""
    try:
        _signal(proc.pid, signal.SIGTERM)
        if await _exited(proc, _STOP_PATIENCE):
            return
    except asyncio.CancelledError:  # cancelled again while waiting: no more waiting
        _kill_from_outside(proc.pid)
        raise
    # It does not answer: the command stopped it (kill -STOP $PPID) or it is stuck.
    _kill_from_outside(proc.pid)
    await _exited(proc, _STOP_PATIENCE)


def _kill_from_outside(supervisor: int) -> None:
    # The descendants first: while the supervisor lives, orphans stay below it and are found.
    _reaper.kill_tree(supervisor, None, reap=False)
    _signal(supervisor, signal.SIGKILL)
    for pid in _reaper.session_members(supervisor):
        _signal(pid, signal.SIGKILL)


def _read_report(read_fd: int) -> list[str]:
    os.set_blocking(read_fd, False)  # a supervisor that is still alive must not block the loop
    try:
        return os.read(read_fd, 4096).decode("utf-8", errors="replace").split()
    except BlockingIOError:
        return []


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code: {code}"


def _sections(out: _Capture, err: _Capture) -> str:
    parts = []
    for label, capture in (("stdout", out), ("stderr", err)):
        if capture.total:
            parts.append(f"--- {label} ---\n{capture.text(label)}")
    return "\n".join(parts) if parts else "(no output)"


class _Capture:
    """The first and the last ``limit`` bytes of a stream, and how many bytes it had."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    async def drain(self, stream: asyncio.StreamReader | None) -> None:
        # Read to the end even past the limit: a child blocked on a full pipe would never exit.
        if stream is None:
            return
        while data := await stream.read(65536):
            self.add(data)

    def add(self, data: bytes) -> None:
        self.total += len(data)
        if len(self.head) < self.limit:
            self.head += data[: self.limit - len(self.head)]
        self.tail += data
        del self.tail[: max(len(self.tail) - self.limit, 0)]

    def text(self, label: str) -> str:
        if self.total <= self.limit:
            return self.head.decode("utf-8", errors="replace").rstrip("\n")
        keep_head = self.limit // 2
        keep_tail = self.limit - keep_head
        omitted = self.total - keep_head - keep_tail
        return (self.head[:keep_head].decode("utf-8", errors="replace")
                + f"\n[... {label} truncated: {omitted} of {self.total} bytes omitted; the first "
                  f"{keep_head} and last {keep_tail} bytes are shown ...]\n"
                + self.tail[-keep_tail:].decode("utf-8", errors="replace").rstrip("\n"))
