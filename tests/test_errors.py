"""The error tree (loom_nb.errors), and raise_for_status raising the class a run failed with
while staying a RunError."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import loom_nb
from loom_nb import (Agent, LoomError, Model, ModelError, ModelRequest, RunError, RunResult,
                     Runtime, ScriptExhaustedError, SessionConfig, StoreError, tool)
from loom_nb.errors import (ControlFlow, ModelRateLimitError, ProviderError, SubAgentPaused,
                            Suspended, error_class)


@tool(requires_approval=True)
def send(to: str) -> str:
    """Send a message."""
    return f"sent to {to}"


def look() -> str:
    """Look around."""
    return "nothing"


def test_every_class_is_declared_in_errors_and_old_paths_still_import() -> None:
    from loom_nb import delegation, result, tools
    from loom_nb.models import replay

    for name in ("RunError", "ReplayError", "RecordingNotFoundError", "ReplayExhaustedError",
                 "ReplayMismatchError", "ScriptExhaustedError", "StoreError"):
        cls = getattr(loom_nb, name)
        assert cls.__module__ == "loom_nb.errors" and getattr(loom_nb.errors, name) is cls
    assert replay.ReplayMismatchError is loom_nb.errors.ReplayMismatchError
    assert result.RunError is RunError
    assert tools.Suspended is Suspended and delegation.SubAgentPaused is SubAgentPaused


def test_control_flow_is_apart_from_errors() -> None:
    # A pause must never be caught by `except LoomError` (in loom_nb or in user code).
    assert issubclass(SubAgentPaused, Suspended) and issubclass(Suspended, ControlFlow)
    assert not issubclass(ControlFlow, LoomError)
    assert issubclass(loom_nb.ReplayMismatchError, ModelError)


def test_a_failed_run_raises_its_own_class_and_a_run_error() -> None:
    result = Agent(Model.scripted([])).run_sync("Hello?")
    with pytest.raises(ScriptExhaustedError) as caught:
        result.raise_for_status()
    exc = caught.value
    assert isinstance(exc, RunError) and isinstance(exc, ModelError)
    assert exc.result is result and exc.cause is ScriptExhaustedError
    assert type(exc).__name__ == "RunError"  # as before: code that prints the name reads the same
    assert str(exc).startswith(f"Run {result.run_id} ended with status 'failed': The scripted")
    with pytest.raises(RunError) as second:  # the same class each time: it is made once
        result.raise_for_status()
    assert type(second.value) is type(exc)


def test_an_unexpected_exception_raises_the_builtin_class() -> None:
    def model_fn(request: ModelRequest) -> str:
        raise ZeroDivisionError("bad math")

    result = Agent(Model.function(model_fn)).run_sync("x")
    with pytest.raises(ZeroDivisionError) as caught:
        result.raise_for_status()
    assert isinstance(caught.value, RunError)


def test_a_result_read_back_from_the_store_raises_the_same_way(tmp_path: Path) -> None:
    config = SessionConfig(id="s1", store=str(tmp_path / "runs.sqlite"))
    failed = Agent(Model.scripted([])).session(config).run_sync("Hello?")
    reopened = Agent(Model.scripted([])).session(config)
    with pytest.raises(ScriptExhaustedError) as caught:
        reopened.result(failed.run_id).raise_for_status()
    assert isinstance(caught.value, RunError)


def test_other_statuses_raise_a_plain_run_error() -> None:
    paused = Agent(Model.scripted([{"tool": "send", "args": {"to": "ana"}}]),
                   tools=[send]).run_sync("Send it.")
    limited = Agent(Model.scripted([{"tool": "look", "args": {}}] * 2), tools=[look],
                    runtime=Runtime.sdk(max_turns=1)).run_sync("Send it.")
    assert (paused.status, limited.status) == ("needs_approval", "limit")
    for result in (paused, limited):
        with pytest.raises(RunError) as caught:
            result.raise_for_status()
        assert type(caught.value) is RunError and caught.value.cause is None
    assert Agent(Model.scripted(["ok"])).run_sync("x").raise_for_status().output == "ok"


def _failed(error_type: str | None) -> RunResult:
    return RunResult(output="", status="failed", run_id="r1", session_id="s1",
                     error="it broke", error_type=error_type)


@pytest.mark.parametrize("error_type, expected", [
    ("StoreError", StoreError), ("ModelRateLimitError", ModelRateLimitError),
    ("QualityGateFailed", None), ("CancelledError", None), ("NoSuchError", None), (None, None),
    ("KeyboardInterrupt", None), ("TimeoutError", TimeoutError),
])
def test_error_class_names(error_type: str | None, expected: type[Exception] | None) -> None:
    assert error_class(error_type) is expected
    with pytest.raises(RunError) as caught:
        _failed(error_type).raise_for_status()
    assert isinstance(caught.value, expected or RunError)


def test_provider_attributes_keep_their_defaults_and_pickling_round_trips() -> None:
    with pytest.raises(ProviderError) as caught:
        _failed("ModelRateLimitError").raise_for_status()
    exc = caught.value
    assert exc.retryable and exc.status_code is None and exc.retry_after is None
    back = pickle.loads(pickle.dumps(exc))
    assert type(back) is type(exc) and str(back) == str(exc) and back.result.run_id == "r1"
    plain = pickle.loads(pickle.dumps(RunError("stopped", _failed(None))))
    assert type(plain) is RunError and plain.result.error == "it broke"


def test_a_class_that_cannot_be_built_from_a_message_falls_back_to_run_error() -> None:
    class NeedsTwo(LoomError):
        def __init__(self, first: str, second: str) -> None:
            super().__init__(first + second)

    with pytest.raises(RunError) as caught:
        _failed("NeedsTwo").raise_for_status()
    assert type(caught.value) is RunError
