"""Capability.shell: run shell commands in a directory, with a timeout and an output cap.

One tool, ``shell__run(command, timeout=None)`` (``name`` defaults to ``"shell"``). The command
runs with ``/bin/sh -c`` in ``cwd``, stdin closed, in a process group of its own. The result says
the exit code and gives stdout and stderr, each capped at ``max_output_bytes`` (the start and the
end are kept, the middle is marked as omitted). When the time runs out the whole process group is
killed and the model gets an error result with the output so far.

Governance and approval (decided here, on purpose):

- ``requires_approval=require_approval``: with the default ``True``, every call pauses the run
  (``status="needs_approval"``) until a person approves it; nothing runs before that.
- The tool is *not* ``read_only`` (governance read-only mode denies it) and *not* marked
  ``destructive``. A shell can of course destroy data; but default governance asks before
  destructive tools, so a destructive flag would make ``require_approval=False`` mean nothing: the
  person who passes it expects commands to run without a prompt, and that is what happens. The one
  knob for asking is ``require_approval``; for finer rules (ask only for some commands, deny
  others) use ``GovernancePolicy(vetoes=[...])`` on the command in ``request.args``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

from ..errors import ConfigError, NotSupportedError, ToolError
from ..tools import tool
from . import Capability

__all__ = ["shell_capability"]

# After the shell exits, children it started in the background may still hold stdout open; wait
# this long for them, then kill the group so that a run never hangs on a forgotten `sleep &`.
_DRAIN_GRACE = 0.5


def shell_capability(cwd: str | os.PathLike[str] = ".", require_approval: bool = True, *,
                     name: str = "shell", timeout: float = 30, max_timeout: float = 600,
                     max_output_bytes: int = 30_000, **unknown: Any) -> Capability:
    """The shell capability (see the module docstring); ``Capability.shell`` calls this.

    Args:
        cwd: the directory commands run in.
        require_approval: every call waits for a person's approval.
        name: the capability's name; the tool is ``{name}__run``.
        timeout: seconds a command may run unless the model asks for another limit.
        max_timeout: the longest limit the model may ask for.
        max_output_bytes: how much of stdout and of stderr each is returned.
    """
    if unknown:
        raise ConfigError(f"Capability.shell() got unknown options {sorted(unknown)}; it takes "
                          f"cwd, require_approval, name, timeout, max_timeout, max_output_bytes.")
    if os.name != "posix":
        raise NotSupportedError("Capability.shell needs a POSIX system (/bin/sh and process "
                                "groups); on Windows, wrap the commands you need in plain "
                                "functions and pass them with Capability.tools(...).")
    folder = Path(cwd).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"Capability.shell(cwd={str(cwd)!r}): no such directory. Create it or "
                          f"pass an existing directory (for example cwd='.').")
    for option, value in (("timeout", timeout), ("max_timeout", max_timeout),
                          ("max_output_bytes", max_output_bytes)):
        if not isinstance(value, int | float) or value <= 0:
            raise ConfigError(f"Capability.shell({option}=...) takes a number > 0, got {value!r}.")
    runner = _Shell(str(folder.resolve()), f"{name}__run", float(timeout),
                    max(float(max_timeout), float(timeout)), int(max_output_bytes))
    run = tool(name=runner.tool_name, requires_approval=require_approval)(runner.tool_function())
    approval = " Each command waits for a person's approval before it runs." \
        if require_approval else ""
    instructions = (f"{runner.tool_name}(command) runs a command with /bin/sh -c in "
                    f"{runner.cwd!r} and returns the exit code, stdout and stderr; it is killed "
                    f"after {timeout:g} s unless you pass a longer timeout (at most "
                    f"{runner.max_timeout:g} s). Commands cannot read input.{approval}")
    return Capability(name=name, toolset=(run,), kind="shell", instructions=instructions)


class _Shell:
    def __init__(self, cwd: str, tool_name: str, timeout: float, max_timeout: float,
                 max_output: int) -> None:
        self.cwd = cwd
        self.tool_name = tool_name
        self.timeout = timeout
        self.max_timeout = max_timeout
        self.max_output = max_output

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

    async def run(self, command: str, timeout: int | None) -> str:
        if not command.strip():
            raise ToolError(f"{self.tool_name}: the command is empty; pass a command to run.")
        if timeout is not None and timeout <= 0:
            raise ToolError(f"{self.tool_name}: timeout is in seconds and must be 1 or more.")
        seconds = min(float(timeout), self.max_timeout) if timeout else self.timeout
        out, err = _Capture(self.max_output), _Capture(self.max_output)
        proc = await asyncio.create_subprocess_shell(
            command, cwd=self.cwd, stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            start_new_session=True)  # its own process group, so a timeout can kill all of it
        readers = [asyncio.create_task(out.drain(proc.stdout)),
                   asyncio.create_task(err.drain(proc.stderr))]
        timed_out = lingering = False
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        try:
            state = await _wait_for_exit(proc, readers, deadline)
            if state == "timeout":
                timed_out = True
                _kill_group(proc)
            elif state == "exited" and _group_alive(proc):
                # the shell is done but children it left in the background hold the pipes open
                await asyncio.wait(readers, timeout=_DRAIN_GRACE)
                if not all(r.done() for r in readers) and _group_alive(proc):
                    lingering = True
                    _kill_group(proc)
            # Whatever is left is output still in the pipes, unless a grandchild left the group
            # (setsid) and holds them open: never wait for that past the time limit.
            await asyncio.wait(readers, timeout=max(deadline - loop.time(), _DRAIN_GRACE))
            await proc.wait()
        finally:
            if proc.returncode is None:  # the run was cancelled: leave nothing running
                _kill_group(proc)
                await proc.wait()
            for reader in readers:
                reader.cancel()
        output = _sections(out, err)
        if timed_out:
            raise ToolError(f"{self.tool_name}: the command timed out after {seconds:g} s and was "
                            f"killed. Output before that:\n{output}\nRun it with a longer "
                            f"timeout, or make it do less at once.")
        status = _exit_text(proc.returncode)
        if lingering:
            status += " (background processes still holding the output open were stopped)"
        return f"{status}\n{output}"


async def _wait_for_exit(proc: asyncio.subprocess.Process, readers: list[asyncio.Task[None]],
                         deadline: float) -> str:
    """'closed' (the output ended), 'exited' (the shell ended, its output may not) or 'timeout'.

    ``proc.wait()`` cannot tell the two first apart: in asyncio it also waits for the pipes, which
    a background child (``sleep 60 &``) keeps open. ``proc.returncode`` is set as soon as the shell
    itself exits, so it is checked between short waits on the readers.
    """
    loop = asyncio.get_running_loop()
    while True:
        remaining = deadline - loop.time()
        if remaining <= 0:
            return "timeout"
        _, pending = await asyncio.wait(readers, timeout=min(remaining, 0.05))
        if not pending:
            try:
                await asyncio.wait_for(proc.wait(), max(deadline - loop.time(), 0.001))
            except TimeoutError:  # it closed its output but goes on running
                return "timeout"
            return "closed"
        if proc.returncode is not None:
            return "exited"


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


def _group_alive(proc: asyncio.subprocess.Process) -> bool:
    try:
        os.killpg(proc.pid, 0)  # signal 0: only asks whether the group has members
    except (ProcessLookupError, PermissionError):
        return False
    return True


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass  # the group is already gone


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
