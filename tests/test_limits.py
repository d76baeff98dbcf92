"""Usage limits (issue 19): max_requests, max_tool_calls and max_cost_usd, checked before each
request and each tool call; the run ends with status "limit" naming the one it met."""

from __future__ import annotations

from typing import Any

import pytest

from loom_nb import Agent, ConfigError, Limits, Model, RunContext, Runtime, tool
from loom_nb.errors import CostUnknownError

from test_cost import PricedModel, ping

ONE = 0.00228  # one PricedModel response: 1000 in (400 cached), 100 out, at claude-sonnet-5


def looping(**limits: Any) -> Agent:
    """A model that calls ping forever."""
    return Agent(Model.function(lambda request: {"tool": "ping", "args": {}}), tools=[ping],
                 runtime=Runtime.sdk(limits=Limits(**limits)))


def test_max_tool_calls_refuses_the_call_beyond_it_and_ends_the_run_after_that_turn() -> None:
    calls = [{"tool": "ping", "args": {}}] * 3
    agent = Agent(Model.scripted([calls, "never asked"]), tools=[ping],
                  runtime=Runtime.sdk(limits=Limits(max_tool_calls=2)))
    session = agent.session()
    result = session.run_sync("go")
    assert (result.status, result.limit) == ("limit", "max_tool_calls")
    assert [(c.is_error, c.error_type) for c in result.tool_calls] == [
        (False, None), (False, None), (True, "LimitReached")]
    assert "max_tool_calls=2" in result.tool_calls[2].content
    assert "max_tool_calls=2 after 2 tool calls" in (result.error or "")
    assert [m.role for m in session.messages] == ["user", "assistant", "tool"]  # a valid history
    assert result.usage.requests == 1  # the model was not asked again


def test_max_tool_calls_counts_across_turns_and_not_below_it() -> None:
    result = looping(max_tool_calls=3).run_sync("go")
    assert (result.status, result.limit, result.turns) == ("limit", "max_tool_calls", 4)
    assert [c.is_error for c in result.tool_calls] == [False, False, False, True]
    exact = Agent(Model.scripted([{"tool": "ping", "args": {}}, "done"]), tools=[ping],
                  runtime=Runtime.sdk(limits=Limits(max_tool_calls=1))).run_sync("go")
    assert exact.status == "completed"  # reaching a limit is not passing it


def test_max_requests_stops_before_the_request_past_it() -> None:
    result = looping(max_requests=2).run_sync("go")
    assert (result.status, result.limit, result.usage.requests) == ("limit", "max_requests", 2)
    assert "max_requests=2 after 2 model requests" in (result.error or "")


def test_max_cost_usd_stops_before_the_next_request_and_refuses_tool_calls() -> None:
    model = PricedModel([{"tool": "ping"}, {"tool": "ping"}, {"tool": "ping"}, "done"])
    result = Agent(model, tools=[ping], runtime=Runtime.sdk(
        limits=Limits(max_cost_usd=1.5 * ONE))).run_sync("go")
    assert (result.status, result.limit) == ("limit", "max_cost_usd")
    # The second response went past the budget: its call is not run, no third request is made.
    assert [c.error_type for c in result.tool_calls] == [None, "LimitReached"]
    assert result.usage.requests == 2 and result.cost == pytest.approx(2 * ONE)
    assert f"max_cost_usd={1.5 * ONE}" in (result.error or "")


def test_a_run_context_budget_sets_the_cost_limit_for_one_run() -> None:
    model = PricedModel(["done"] * 2)
    agent = Agent(model)
    assert agent.run_sync("go").status == "completed"
    result = agent.run_sync("go", context=RunContext(budget=Limits(max_cost_usd=ONE / 2)))
    assert result.status == "completed"  # checked before each request: the first one may go
    assert result.cost == pytest.approx(ONE)


def test_max_cost_usd_on_a_model_without_a_known_price_fails_clearly() -> None:
    result = looping(max_cost_usd=0.01).run_sync("go")
    assert (result.status, result.error_type) == ("failed", "CostUnknownError")
    assert "max_cost_usd=0.01" in (result.error or "") and "genai-prices" in (result.error or "")
    assert issubclass(CostUnknownError, ConfigError)


@pytest.mark.parametrize("field", ["max_requests", "max_tool_calls", "max_cost_usd"])
def test_limits_must_be_positive(field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Limits(**{field: 0})


def test_an_approved_call_past_max_tool_calls_is_refused_at_the_resume() -> None:
    @tool(requires_approval=True)
    def wipe() -> str:
        """Wipe."""
        return "wiped"

    agent = Agent(Model.scripted([[{"tool": "ping", "args": {}}, {"tool": "wipe", "args": {}}], "x"]),
                  tools=[ping, wipe], runtime=Runtime.sdk(limits=Limits(max_tool_calls=1)))
    paused = agent.session().run_sync("go")
    assert paused.status == "needs_approval"
    done = paused.approve().resume_sync()
    assert (done.status, done.limit) == ("limit", "max_tool_calls")
    assert [(c.name, c.error_type) for c in done.tool_calls] == [("ping", None), ("wipe", "LimitReached")]
