"""Cost from genai-prices (issue 19): per response, per run, in the DataFrames and the views;
unknown prices are None, never 0; cache reads and writes priced as the provider prices them."""

from __future__ import annotations

import random
from typing import Any

import genai_prices
import pytest

from loom_nb import Agent, Model, ModelRequest, ModelResponse, Runtime, tool
from loom_nb.cost import price, priced
from loom_nb.display.views import budget_html, budget_text, context_requests
from loom_nb.messages import Message, TextPart, ToolCall, Usage
from loom_nb.models import Model as BaseModel


def reference(usage: Usage, provider: str, name: str) -> float:
    counts = {"input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
              "cache_read_tokens": usage.cache_read_tokens,
              "cache_write_tokens": usage.cache_write_tokens}
    return float(genai_prices.calc_price(genai_prices.Usage(**counts), name,
                                         provider_id=provider).total_price)


@pytest.mark.parametrize(("provider", "name"), [
    ("anthropic", "claude-sonnet-4-5"), ("anthropic", "claude-sonnet-5"),
    ("anthropic", "claude-haiku-4-5"), ("openai", "gpt-5.4"), ("openai", "gpt-5"),
    ("openai", "gpt-4o-mini")])
def test_the_price_is_genai_prices_own_including_cache_and_tiers(provider: str, name: str) -> None:
    rng = random.Random(name)
    for _ in range(20):
        read, write = rng.randint(0, 60_000), rng.randint(0, 30_000) if provider == "anthropic" else 0
        # up to 400k input: past the 200k tier of the long-context prices, where there is one
        usage = Usage(input_tokens=read + write + rng.randint(0, 340_000),
                      output_tokens=rng.randint(0, 8000), cache_read_tokens=read,
                      cache_write_tokens=write, requests=1)
        expected = reference(usage, provider, name)
        assert price(usage, provider, name) == pytest.approx(expected, rel=1e-9, abs=1e-12)


def test_cache_reads_cost_less_and_writes_more_than_plain_input() -> None:
    plain = price(Usage(input_tokens=10_000, requests=1), "anthropic", "claude-sonnet-5")
    read = price(Usage(input_tokens=10_000, cache_read_tokens=10_000, requests=1), "anthropic",
                 "claude-sonnet-5")
    write = price(Usage(input_tokens=10_000, cache_write_tokens=10_000, requests=1), "anthropic",
                  "claude-sonnet-5")
    assert plain is not None and read is not None and write is not None
    assert read == pytest.approx(plain / 10) and write == pytest.approx(plain * 1.25)


def test_unknown_models_providers_and_servers_have_no_price_not_zero() -> None:
    used = Usage(input_tokens=100, output_tokens=10, requests=1)
    assert price(used, "anthropic", "claude-made-up-9") is None
    assert price(used, "scripted", "scripted") is None
    assert price(used, "openai", "llama3.2", "http://127.0.0.1:11434/v1") is None  # Ollama
    # A proxy in front of Anthropic still bills Anthropic's price.
    assert price(used, "anthropic", "claude-sonnet-5", "http://127.0.0.1:9/") == price(
        used, "anthropic", "claude-sonnet-5")
    assert price(Usage(), "anthropic", "claude-sonnet-5") is None  # nothing used


def test_a_sum_is_unknown_once_a_priced_part_is_unknown_and_empty_usage_is_neutral() -> None:
    a = Usage(input_tokens=10, requests=1, cost=0.5)
    b = Usage(input_tokens=10, requests=1, cost=0.25)
    unknown = Usage(input_tokens=10, requests=1)
    assert (Usage() + a).cost == 0.5 and (a + Usage()).cost == 0.5
    assert (a + b).cost == 0.75
    assert (a + unknown).cost is None and (unknown + a).cost is None
    assert Usage.from_dict((a + b).to_dict()) == a + b
    assert Usage.from_dict({"input_tokens": 3}).cost is None  # usage stored before costs


class PricedModel(BaseModel):
    """A test model that reports itself as a known Anthropic model (no network)."""

    provider = "anthropic"

    def __init__(self, turns: list[Any]) -> None:
        self.name = "claude-sonnet-5"
        self.turns = list(turns)

    async def stream(self, request: ModelRequest) -> Any:
        turn = self.turns.pop(0)  # a str is an answer; {"tool": name} a call
        if isinstance(turn, str):
            message, stop = Message(role="assistant", parts=(TextPart(text=turn),)), "end_turn"
        else:
            message = Message(role="assistant", parts=(
                ToolCall(id=f"t{len(self.turns)}", name=turn["tool"], args={}),))
            stop = "tool_use"
        yield ModelResponse(message=message, stop_reason=stop, model_name="claude-sonnet-5",
                            usage=Usage(input_tokens=1000, output_tokens=100,
                                        cache_read_tokens=400, requests=1))


@tool
def ping() -> str:
    """Ping."""
    return "pong"


def test_a_runs_cost_is_the_sum_of_its_responses_and_shows_everywhere(tmp_path: Any) -> None:
    from loom_nb import SessionConfig
    from loom_nb.display.run import result_text as render_text
    from loom_nb.export import events_df, runs_df

    session = Agent(PricedModel([{"tool": "ping"}, "done"]), tools=[ping]).session(
        SessionConfig(store=str(tmp_path / "s.db")))
    result = session.run_sync("go")
    one = price(Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400, requests=1),
                "anthropic", "claude-sonnet-5")
    assert one is not None and result.cost == pytest.approx(2 * one)
    responses = [e.data["usage"]["cost"] for e in result.events if e.type == "model.response"]
    assert responses == [pytest.approx(one)] * 2
    runs = runs_df(session)
    assert runs.cost_usd.tolist() == [pytest.approx(2 * one)]
    events = events_df(str(tmp_path / "s.db"))
    assert events.cost_usd.sum() == pytest.approx(2 * one)
    assert events[events.type == "run.finished"].run_cost_usd.tolist() == [pytest.approx(2 * one)]
    assert f"${2 * one:.3g}" in render_text(result)
    view = budget_text(context_requests(result.events))
    assert "cache read" in view and "800 read from the prompt cache" in view
    assert f"${2 * one:.3g}" in view
    html = budget_html(context_requests(result.events))
    assert "<th" in html and "cost" in html and f"${one:.3g}" in html and f"${2 * one:.3g}" in html


def test_a_scripted_run_has_no_cost_and_its_views_show_none() -> None:
    from loom_nb.display.run import result_text as render_text

    result = Agent(Model.scripted(["hi"])).run_sync("go")
    assert result.cost is None and result.usage.requests == 1
    assert "$" not in render_text(result)
    assert "cost" not in budget_text(context_requests(result.events))


def test_evaluate_has_each_runs_cost_and_the_report_totals_it_only_when_all_are_known() -> None:
    import re

    import loom_nb
    from loom_nb.scoring import exact

    tasks = [{"id": f"t{n}", "input": "go", "target": "done"} for n in range(3)]
    agent = Agent(PricedModel(["done"] * 3))  # one answer per task, in turn
    frame = loom_nb.evaluate(agent, tasks, scorers=[exact()], progress=False, concurrency=1)
    one = price(Usage(input_tokens=1000, output_tokens=100, cache_read_tokens=400, requests=1),
                "anthropic", "claude-sonnet-5")
    assert one is not None and frame["cost_usd"].tolist() == [pytest.approx(one)] * 3

    def cost_row(page: str) -> list[str]:
        row = re.search(r"<tr><td[^>]*>cost \(USD\)</td>(.*?)</tr>", page)
        assert row is not None, page
        return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))

    # metric | variant n mean p50 p90 max sum
    assert cost_row(loom_nb.report(frame).html)[-1] == f"{3 * one:.3g}"
    frame.loc[0, "cost_usd"] = float("nan")  # a run with no known price: no total, not a smaller one
    cells = cost_row(loom_nb.report(frame).html)
    assert cells[1] == "2" and cells[-1] == "–"
