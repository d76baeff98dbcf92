"""Probes of Capability.shell under an adversarial model (issue 15, shell confinement).

Each probe failed on the shell before the fix: secrets in ``env``, background processes that
outlived the call (setsid, double fork, nohup, disown, SIGTERM ignored, a cancel), and a governance
veto that a string match let through (``rm\\t``, ``/bin/rm``, ``$x``, ``sh -c``, ...).
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from loom_nb import Agent, Capability, ConfigError, Model, Runtime
from loom_nb.governance import ToolRequest
from loom_nb.runtime import GovernancePolicy

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="the probes read /proc; the subreaper is Linux-only")


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process started by a probe (not a zombie, not a reused pid)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state != "Z" and b"sleep" in cmdline


def _pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


@pytest.fixture
def pid_file(tmp_path: Path) -> Iterator[Path]:
    """Where a probe writes the pids of what it started; whatever survives is killed afterwards,
    so that a failing probe does not leave sleepers on the machine."""
    path = tmp_path / "pids"
    yield path
    for pid in _pids(path):
        if _running(pid):
            os.kill(pid, signal.SIGKILL)


def _survivors(path: Path, settle: float = 1.0) -> list[int]:
    # SIGKILL is asynchronous: give the kernel a moment before calling a process a survivor.
    end = time.monotonic() + settle
    while True:
        alive = [pid for pid in _pids(path) if _running(pid)]
        if not alive or time.monotonic() > end:
            return alive
        time.sleep(0.02)


def _shell(tmp_path: Path, **options) -> Capability:
    return Capability.shell(str(tmp_path), require_approval=False, **options)


def _invoke(cap: Capability, command: str, timeout: int | None = None):
    args = {"command": command} | ({"timeout": timeout} if timeout else {})
    return asyncio.run(cap.toolset[0].invoke(args))


# -- 1. the environment is scrubbed -------------------------------------------------------------


def test_secrets_in_the_notebook_environment_are_not_visible(tmp_path: Path,
                                                             monkeypatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN",
                 "BASH_ENV", "LD_PRELOAD", "PYTHONPATH"):
        monkeypatch.setenv(name, f"secret-{name}")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("EXTRA_SETTING", "from-notebook")
    shown = _invoke(_shell(tmp_path), "env").content
    assert "secret-" not in shown
    names = {line.split("=", 1)[0] for line in shown.splitlines()[2:]}
    assert {"PATH", "HOME", "LC_ALL"} <= names
    assert "EXTRA_SETTING" not in names

    added = _shell(tmp_path, env={"PROJECT_MODE": "test", "PATH": "/usr/bin:/bin"},
                   inherit_env=["EXTRA_SETTING", "NOT_SET_ANYWHERE"])
    shown = _invoke(added, "env").content
    assert "PROJECT_MODE=test" in shown and "EXTRA_SETTING=from-notebook" in shown
    assert "PATH=/usr/bin:/bin\n" in shown + "\n" and "NOT_SET_ANYWHERE" not in shown
    assert "secret-" not in shown


def test_environment_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="inherit_env=.... takes a list of variable names"):
        _shell(tmp_path, inherit_env="OPENAI_API_KEY")  # a string, not a list of names
    with pytest.raises(ConfigError, match="'BAD NAME' is not a variable name"):
        _shell(tmp_path, env={"BAD NAME": "1"})
    with pytest.raises(ConfigError, match="the value of X must be a string"):
        _shell(tmp_path, env={"X": 1})


# -- 2. nothing a command starts outlives the call ---------------------------------------------

# Each writes the pid of a `sleep` it leaves behind, with its output away from the pipes (the old
# shell only killed what kept the pipes open), in the ways a process escapes a process group.
ESCAPES = {
    "setsid": "setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids",
    "setsid-sh": "setsid sh -c 'echo $$ >> pids; exec sleep 100' </dev/null >/dev/null 2>&1 &",
    "double-fork": "( (sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids) & )",
    "nohup": "nohup sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids",
    "disown": "bash -c 'sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids; disown'",
    # the ignored signals are inherited: neither the shell nor its sleep stops on SIGTERM
    "ignores-term": ("setsid sh -c 'trap \"\" TERM HUP; echo $$ >> pids; sleep 100 & "
                     "echo $! >> pids; wait' </dev/null >/dev/null 2>&1 &"),
}


@pytest.mark.parametrize("escape", sorted(ESCAPES))
def test_background_processes_do_not_outlive_the_call(tmp_path: Path, pid_file: Path,
                                                      escape: str) -> None:
    started = time.monotonic()
    outcome = _invoke(_shell(tmp_path), f"{ESCAPES[escape]}\nsleep 0.1; echo done")
    assert time.monotonic() - started < 10
    assert not outcome.is_error and "done" in outcome.content
    assert _pids(pid_file), "the probe did not start its process"
    assert _survivors(pid_file) == []
    assert "background processes it left running were stopped" in outcome.content


def test_many_escapes_at_once_leave_nothing(tmp_path: Path, pid_file: Path) -> None:
    # Race probe: 60 escapes of every kind in one call (420 processes), started while the cleanup
    # may already run, so that a kill that misses one in 50 shows.
    escapes = "\n".join(ESCAPES.values())
    outcome = _invoke(_shell(tmp_path, timeout=60),
                      f"for i in $(seq 60); do\n{escapes}\ndone; echo done")
    assert "done" in outcome.content
    assert len(_pids(pid_file)) == 60 * (len(ESCAPES) + 1)
    assert _survivors(pid_file, settle=3.0) == []


def test_a_timeout_kills_escaped_processes_and_one_that_keeps_forking(tmp_path: Path,
                                                                      pid_file: Path) -> None:
    command = ("setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids; "
               "while :; do setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids; "
               "sleep 0.01; done")
    started = time.monotonic()
    outcome = _invoke(_shell(tmp_path), command, timeout=1)
    assert time.monotonic() - started < 10
    assert outcome.is_error and "timed out after 1 s" in outcome.content
    assert len(_pids(pid_file)) > 5
    assert _survivors(pid_file) == []


@pytest.mark.anyio
async def test_cancelling_the_run_kills_escaped_processes(tmp_path: Path, pid_file: Path) -> None:
    cap = _shell(tmp_path)
    command = "\n".join(ESCAPES.values()) + "\nsleep 60"
    task = asyncio.create_task(cap.toolset[0].invoke({"command": command}))
    for _ in range(250):
        if len(_pids(pid_file)) == len(ESCAPES) + 1:
            break
        await asyncio.sleep(0.02)
    assert len(_pids(pid_file)) == len(ESCAPES) + 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert _survivors(pid_file) == []


def test_a_command_that_kills_its_supervisor_loses_its_session(tmp_path: Path,
                                                               pid_file: Path) -> None:
    # The guard keeps this probe from killing pytest itself where there is no supervisor.
    command = ("nohup sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids; "
               "grep -q _reaper /proc/$PPID/cmdline && kill -9 $PPID; sleep 0.2; echo done")
    outcome = _invoke(_shell(tmp_path), command)
    assert outcome.is_error and "supervisor" in outcome.content
    assert _survivors(pid_file) == []


def test_a_stopped_supervisor_is_killed_from_outside_with_its_tree(tmp_path: Path,
                                                                    pid_file: Path,
                                                                    monkeypatch) -> None:
    import loom_nb.capability.shell as shell

    monkeypatch.setattr(shell, "_STOP_PATIENCE", 0.5, raising=False)  # for a SIGTERM
    command = ("setsid sleep 100 </dev/null >/dev/null 2>&1 & echo $! >> pids; "
               "grep -q _reaper /proc/$PPID/cmdline && kill -STOP $PPID; sleep 100")
    started = time.monotonic()
    outcome = _invoke(_shell(tmp_path), command, timeout=1)
    assert time.monotonic() - started < 10
    assert outcome.is_error and "timed out after 1 s" in outcome.content
    assert _survivors(pid_file) == []


def test_exit_codes_signals_and_sigpipe_still_behave(tmp_path: Path) -> None:
    # The supervisor sits between loom_nb and /bin/sh: the shell's status must come through, and
    # the command must see default signal dispositions (Python ignores SIGPIPE).
    cap = _shell(tmp_path)
    assert _invoke(cap, "exit 7").content == "exit code: 7\n(no output)"
    assert _invoke(cap, "kill -9 $$").content == "killed by signal SIGKILL\n(no output)"
    piped = _invoke(cap, "yes | head -n 2; echo ${PIPESTATUS:-ok}")
    assert piped.content == "exit code: 0\n--- stdout ---\ny\ny\nok"


# -- 3. a veto that parses the command -----------------------------------------------------------

BYPASSES = [
    "rm\tfile", "/bin/rm file", "ls;rm file", "ls ;rm file", "ls&&rm file", "ls|rm", "ls\nrm file",
    "x=rm; $x file", "\"$x\" file", "${x} file", "find . -delete", "find . -exec rm {} +",
    "ls | xargs rm", "sh -c 'rm file'", "bash -c ls", "echo `rm file`", "echo $(rm file)",
    "$(echo rm) file", "eval rm file", "r''m file", "\\rm file", "'/bin/rm' file", "\"rm\" file",
    "env rm file", "exec rm file", "command rm file", "nohup rm file", "sudo rm file",
    "time rm file", "if true; then rm file; fi", "f() { rm file; }; f", "cat <(rm file)",
    "X=1 rm file", "echo ${x:-$(rm file)}", "cat <<EOF\n$(rm file)\nEOF", "r* file",
    "echo 'unterminated", "case a in a) rm file;; esac", "python3 -c 'import os'",
    ". ./script.sh", "alias ls=rm", "trap 'rm file' EXIT", "PATH=/tmp ls", "RM file",
    "busybox rm file", "ls > $(rm file)", "echo \"$(echo \"$(rm file)\")\"", "",
]

HARMLESS = ["ls -la", "echo rm", "grep -r rm .", "git status && git diff", "cat a | wc -l",
            "mkdir -p out; cp a out/", "find . -name '*.py'", "echo hi > out.txt 2>&1",
            "FOO=1 make test", "~/bin/tool --flag"]


def _request(command: object, name: str = "shell__run") -> ToolRequest:
    return ToolRequest(name=name, args={"command": command}, call_id="c1", tool=None,
                       run_id="r", session_id="s", agent="a")


@pytest.mark.parametrize("command", BYPASSES)
def test_ask_before_sees_through_every_spelling(command: str) -> None:
    from loom_nb.capability.shell import ask_before, deny_commands

    decision = ask_before(["rm", "mv"])(_request(command))
    assert decision is not None and decision.action == "ask", command
    denied = deny_commands(["rm"])(_request(command))
    assert denied is not None and denied.action == "deny", command


@pytest.mark.parametrize("command", HARMLESS)
def test_ask_before_lets_other_commands_through(command: str) -> None:
    from loom_nb.capability.shell import ask_before, scan_command

    assert ask_before(["rm", "mv"])(_request(command)) is None, scan_command(command)


def test_ask_before_reasons_options_and_other_tools() -> None:
    from loom_nb.capability.shell import ask_before, scan_command

    veto = ask_before(["rm", "mv"])
    assert veto(_request("ls; /bin/rm -rf x")).reason == "The command runs rm."
    opaque = veto(_request("$x file")).reason
    assert opaque.startswith("Cannot tell which programs the command runs")
    assert "$x" in opaque
    assert veto(_request(["rm", "x"])).action == "ask"  # not a string: fail closed
    assert veto(_request("rm x", name="files__write")) is None  # other tools are not its business
    assert ask_before(["rm"], tool="sh__run")(_request("rm x", name="sh__run")).action == "ask"
    scan = scan_command("ls | grep a && echo $(date)")
    assert (scan.commands, scan.unknown) == (("ls", "grep", "echo", "date"), ())
    for bad in ([], "rm", ["/bin/rm"], [""]):
        with pytest.raises(ConfigError):
            ask_before(bad)


def test_the_veto_pauses_a_run_before_the_command_runs(tmp_path: Path) -> None:
    from loom_nb.capability.shell import ask_before

    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    model = Model.scripted([{"tool": "shell__run", "args": {"command": "r''m\tkeep.txt"}},
                            "Removed."])
    agent = Agent(model, capabilities=[_shell(tmp_path)],
                  runtime=Runtime.sdk(governance=GovernancePolicy(vetoes=[ask_before(["rm"])])))
    paused = agent.run_sync("clean up")
    assert paused.status == "needs_approval" and victim.exists()
    assert paused.pending[0].reason == "The command runs rm."
