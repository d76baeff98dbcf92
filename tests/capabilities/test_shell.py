"""Capability.shell with real subprocesses: approval, timeouts, output caps, process cleanup."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from loom_nb import Agent, Capability, ConfigError, Model
from loom_nb.runtime import GovernancePolicy

from .conftest import run_calls


def invoke(cap: Capability, **args):
    return asyncio.run(cap.toolset[0].invoke(args))


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie waiting to be reaped does not count)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pid: int, seconds: float = 3.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.02)
    return False


# -- the capability itself -------------------------------------------------------------------------


def test_tool_flags_and_configuration(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path))
    (run,) = cap.toolset
    assert (cap.kind, run.name, run.requires_approval, run.read_only, run.destructive) == (
        "shell", "shell__run", True, False, False)
    assert run.parameters["required"] == ["command"]
    assert str(tmp_path.resolve()) in cap.instructions and "approval" in cap.instructions
    direct = Capability.shell(str(tmp_path), require_approval=False, name="sh", timeout=5)
    assert direct.toolset[0].name == "sh__run" and not direct.toolset[0].requires_approval
    assert "approval" not in direct.instructions and "after 5 s" in direct.instructions
    with pytest.raises(ConfigError, match="no such directory"):
        Capability.shell(str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="unknown options"):
        Capability.shell(str(tmp_path), environment={})
    with pytest.raises(ConfigError, match="timeout"):
        Capability.shell(str(tmp_path), timeout=0)


# -- approval --------------------------------------------------------------------------------------


def _agent(tmp_path: Path, require_approval: bool = True, governance=None) -> Agent:
    from loom_nb import Runtime

    model = Model.scripted([{"tool": "shell__run", "args": {"command": "echo made > made.txt"}},
                            "Made it."])
    runtime = Runtime.sdk(governance=governance) if governance else None
    return Agent(model, capabilities=[Capability.shell(str(tmp_path),
                                                              require_approval=require_approval)],
                 runtime=runtime)


def test_each_command_waits_for_approval(tmp_path: Path) -> None:
    paused = _agent(tmp_path).run_sync("make a file")
    assert paused.status == "needs_approval"
    assert [(p.name, p.args, p.reason) for p in paused.pending] == [
        ("shell__run", {"command": "echo made > made.txt"}, "Tool 'shell__run' requires approval.")]
    assert not (tmp_path / "made.txt").exists()  # nothing ran
    assert [c.content for c in paused.tool_calls] == [None]

    done = paused.approve().resume_sync()
    assert (done.status, done.output) == ("completed", "Made it.")
    assert (tmp_path / "made.txt").read_text() == "made\n"
    assert done.tool_calls[0].content == "exit code: 0\n(no output)"


def test_a_rejected_command_never_runs(tmp_path: Path) -> None:
    paused = _agent(tmp_path).run_sync("make a file")
    done = paused.reject(reason="not in my home").resume_sync()
    assert done.status == "completed" and not (tmp_path / "made.txt").exists()
    assert done.tool_calls[0].is_error
    assert done.tool_calls[0].content == "A person rejected this call: not in my home"


def test_without_approval_it_runs_directly(tmp_path: Path) -> None:
    result = _agent(tmp_path, require_approval=False).run_sync("make a file")
    assert result.status == "completed" and (tmp_path / "made.txt").exists()
    decision = next(e.data for e in result.events if e.type == "governance.decision")
    assert (decision["action"], decision["check"]) == ("allow", "default")


def test_read_only_governance_denies_the_shell(tmp_path: Path) -> None:
    result = _agent(tmp_path, False, GovernancePolicy(read_only=True)).run_sync("make a file")
    assert result.tool_calls[0].is_error and "Read-only mode" in result.tool_calls[0].content
    assert not (tmp_path / "made.txt").exists()


# -- running ---------------------------------------------------------------------------------------


def test_output_exit_code_and_cwd(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path), require_approval=False)
    result = run_calls(cap,
                       ("shell__run", {"command": "pwd; echo oops >&2; exit 3"}),
                       ("shell__run", {"command": "cat"}),  # stdin is closed: no hang
                       ("shell__run", {"command": "  "}),
                       ("shell__run", {"command": "kill -9 $$"}))
    failing, cat, empty, killed = result.tool_calls
    assert not failing.is_error  # a non-zero exit is a result for the model to read
    assert failing.content == (f"exit code: 3\n--- stdout ---\n{tmp_path.resolve()}\n"
                               f"--- stderr ---\noops")
    assert cat.content == "exit code: 0\n(no output)"
    assert empty.is_error and "the command is empty" in empty.content
    assert killed.content == "killed by signal SIGKILL\n(no output)"


def test_timeout_kills_the_process_group_and_keeps_partial_output(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path), require_approval=False, timeout=30)
    command = "echo started; sleep 60 & echo $! > child.pid; wait"
    started = time.monotonic()
    outcome = invoke(cap, command=command, timeout=1)
    assert time.monotonic() - started < 10
    assert outcome.is_error
    assert outcome.content == ("shell__run: the command timed out after 1 s and was killed. Output "
                               "before that:\n--- stdout ---\nstarted\nRun it with a longer "
                               "timeout, or make it do less at once.")
    child = int((tmp_path / "child.pid").read_text())
    assert wait_gone(child), "the background child of a timed-out command is still running"
    bad = invoke(cap, command="true", timeout=0)
    assert bad.is_error and "must be 1 or more" in bad.content


def test_background_children_do_not_hang_the_call(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path), require_approval=False, timeout=20)
    started = time.monotonic()
    outcome = invoke(cap, command="sleep 60 & echo $! > child.pid; echo bg")
    assert time.monotonic() - started < 10
    assert outcome.content == ("exit code: 0 (background processes it left running were "
                               "stopped)\n--- stdout ---\nbg")
    assert wait_gone(int((tmp_path / "child.pid").read_text()))


def test_big_output_is_capped_with_a_marker(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path), require_approval=False, max_output_bytes=1000)
    outcome = invoke(cap, command="echo BEGIN; head -c 5000000 /dev/zero | tr '\\0' a; echo; "
                                  "echo END; seq 1 3000 >&2")
    stdout, stderr = outcome.content.split("--- stderr ---\n")
    assert stdout.startswith("exit code: 0\n--- stdout ---\nBEGIN\naaa")
    total = len("BEGIN\n") + 5_000_000 + len("\nEND\n")
    assert (f"[... stdout truncated: {total - 1000} of {total} bytes omitted; the first 500 "
            f"and last 500 bytes are shown ...]") in stdout
    assert stdout.rstrip().endswith("a\nEND")
    assert "[... stderr truncated:" in stderr and stderr.endswith("2999\n3000")
    assert len(outcome.content) < 2600


@pytest.mark.anyio
async def test_cancelling_the_call_kills_the_command(tmp_path: Path) -> None:
    cap = Capability.shell(str(tmp_path), require_approval=False)
    task = asyncio.create_task(cap.toolset[0].invoke({"command": "echo $$ > sh.pid; sleep 60"}))
    pid_file = tmp_path / "sh.pid"
    for _ in range(200):
        if pid_file.exists() and pid_file.read_text().strip():
            break
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_gone(int(pid_file.read_text()))
