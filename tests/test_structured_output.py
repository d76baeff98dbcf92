"""Structured output and tool choice in the kernel, with the offline models: every kind of
type, the retry with the validation error, the failure after the retries, partial output while
streaming, the output tool, sessions and stores, the run card, messages_df and the quality gate."""

from __future__ import annotations

import dataclasses
import json
from typing import Literal

from typing_extensions import TypedDict  # pydantic needs it before Python 3.12

import pytest
from pydantic import BaseModel

from loom_nb import (Agent, ConfigError, Model, OutputValidationError, 
                     Runtime, SessionConfig, SQLiteStore, tool)
from loom_nb.models import ModelRequest
from loom_nb.quality import QualityGate

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class City(BaseModel):
    name: str
    population: int


@dataclasses.dataclass
class Point:
    x: float
    y: float


class Pair(TypedDict):
    left: str
    right: str


PARIS = '{"name": "Paris", "population": 2100000}'


@tool
def lookup(city: str) -> str:
    """Facts about a city."""
    return f"{city}: 2.1 million people"


@pytest.mark.parametrize(("output_type", "answer", "expected"), [
    (City, PARIS, City(name="Paris", population=2100000)),
    (Point, '{"x": 1, "y": 2.5}', Point(1.0, 2.5)),
    (Pair, '{"left": "a", "right": "b"}', {"left": "a", "right": "b"}),
    (int, "42", 42),
    (int, '{"response": 42}', 42),
    (list[int], "[1, 2, 3]", [1, 2, 3]),
    (City | Point, '{"response": {"x": 0, "y": 0}}', Point(0.0, 0.0)),
    (Literal["yes", "no"], '"yes"', "yes"),
    (City, f"Here it is:\n```json\n{PARIS}\n```", City(name="Paris", population=2100000)),
])
def test_a_scripted_json_answer_validates(output_type: object, answer: str, expected: object) -> None:
    result = Agent(Model.scripted([answer])).run_sync("?", output_type=output_type)
    assert result.ok and result.output == expected and result.text == answer


def test_str_means_text_and_overrides_the_agents_type() -> None:
    agent = Agent(Model.scripted(["plain words"]), output_type=City)
    result = agent.run_sync("?", output_type=str)
    assert result.ok and result.output == "plain words" and result.output_type is None


def test_the_validation_error_goes_back_then_the_answer_validates() -> None:
    model = Model.scripted(['{"name": "Paris", "population": "lots"}', PARIS])
    result = Agent(model, output_type=City).run_sync("?")
    assert result.ok and result.output.population == 2100000
    told = model.requests[1].messages[-1]
    assert told.role == "user" and "population: Input should be a valid integer" in told.text
    assert model.requests[0].output is not None and model.requests[0].output.mode == "native"


def test_retries_run_out_then_the_run_fails_with_the_last_error() -> None:
    model = Model.scripted(["Paris!", '{"name": 1}', '{"name": "Paris"}'])
    session = Agent(model, output_type=City, output_retries=1).session()
    result = session.run_sync("?")
    assert result.status == "failed" and result.error_type == "OutputValidationError"
    assert result.output is None and model.remaining == 1
    assert "name: Input should be a valid string" in (result.error or "")
    with pytest.raises(OutputValidationError):
        result.raise_for_status()
    # the history stays a conversation to continue from: the answers and what was said about them
    assert [m.role for m in session.history] == ["user", "assistant", "user", "assistant", "user"]


def test_output_retries_zero_fails_at_once() -> None:
    model = Model.scripted(["nope", PARIS])
    result = Agent(model).run_sync("?", output_type=City, output_retries=0)
    assert result.status == "failed" and model.remaining == 1


def test_a_stop_for_max_tokens_is_not_validated() -> None:
    from loom_nb.messages import Message, TextPart
    from loom_nb.models import ModelResponse

    cut = ModelResponse(message=Message(role="assistant", parts=(TextPart(text='{"name": "Pa'),)),
                        stop_reason="max_tokens")
    result = Agent(Model.scripted([cut])).run_sync("?", output_type=City)
    assert result.status == "limit" and result.output is None and result.text == '{"name": "Pa'


async def test_stream_yields_partial_output_then_the_value() -> None:
    async def answer(request: ModelRequest):  # type: ignore[no-untyped-def]
        for piece in ['{"name": "Pa', 'ris", "popu', 'lation": 21', '00000}']:
            yield piece

    stream = Agent(Model.function(answer), output_type=City).stream("?")
    partial = [e.data async for e in stream if e.type == "output.partial"]
    assert partial == [{"output": {"name": "Pa"}, "valid": False},
                       {"output": {"name": "Paris"}, "valid": False},
                       {"output": {"name": "Paris", "population": 21}, "valid": True},
                       {"output": {"name": "Paris", "population": 2100000}, "valid": True}]
    assert stream.result is not None and stream.result.output.population == 2100000
    assert not any(e.type == "output.partial" for e in stream.result.events)  # live only


async def test_partial_list_items_validate_as_they_arrive() -> None:
    async def answer(request: ModelRequest):  # type: ignore[no-untyped-def]
        for piece in ['{"response": [1, ', '2, 3', "]}"]:
            yield piece

    stream = Agent(Model.function(answer), output_type=list[int]).stream("?")
    partial = [e.data async for e in stream if e.type == "output.partial"]
    assert partial[0] == {"output": [1], "valid": True} and partial[-1]["output"] == [1, 2, 3]


def test_tool_mode_output_tool_and_other_calls_in_the_same_turn() -> None:
    ran: list[str] = []

    @tool
    def note(text: str) -> str:
        """Keep a note."""
        ran.append(text)
        return "kept"

    model = Model.scripted([[{"tool": "note", "args": {"text": "x"}},
                             {"tool": "final_result", "args": {"name": "Paris", "population": 1}}]])
    result = Agent(model, tools=[note], output_type=City, output_mode="tool").run_sync("?")
    assert result.ok and result.output == City(name="Paris", population=1) and ran == []
    request = model.requests[0]
    assert [t.name for t in request.tools] == ["note", "final_result"]
    assert request.tool_choice == "required" and request.output is not None
    contents = [e.data["content"] for e in result.events if e.type == "tool.result"]
    assert contents == ["Not run: a final result was given in the same turn.",
                        "Final result processed."]


def test_invalid_output_tool_arguments_are_retried() -> None:
    model = Model.scripted([{"tool": "final_result", "args": {"name": "Paris"}},
                            {"tool": "final_result", "args": {"name": "Paris", "population": 3}}])
    result = Agent(model, output_type=City, output_mode="tool").run_sync("?")
    assert result.ok and result.output.population == 3
    error = model.requests[1].messages[-1].parts[0]
    assert error.is_error and "population: Field required" in error.content


def test_set_up_mistakes_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="cannot be validated by pydantic"):
        Agent(Model.scripted([]), output_type=object())
    with pytest.raises(ConfigError, match="output_mode="):
        Agent(Model.scripted([]), output_type=City, output_mode="json")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="output_retries="):
        Agent(Model.scripted([]), output_type=City, output_retries=-1)
    with pytest.raises(ConfigError, match="need an output_type"):
        Agent(Model.scripted([])).run_sync("?", output_mode="tool")
    with pytest.raises(ConfigError, match="unknown keyword argument"):
        Agent(Model.scripted([])).run_sync("?", output_typ=City)  # type: ignore[call-arg]

    @tool
    def final_result(x: int) -> int:
        """A tool with the output tool's name."""
        return x

    result = Agent(Model.scripted(["{}"]), tools=[final_result], output_type=City,
                   output_mode="tool").run_sync("?")
    assert result.status == "failed" and "rename it" in (result.error or "")


def test_forced_tool_choice_holds_for_one_turn() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"city": "Paris"}}, "Big."])
    result = Agent(model, tools=[lookup]).run_sync("?", tool_choice="lookup")
    assert result.ok and [r.tool_choice for r in model.requests] == ["lookup", "auto"]
    model = Model.scripted(["No tools needed."])
    Agent(model, tools=[lookup]).run_sync("?", tool_choice="none")
    assert model.requests[0].tool_choice == "none"


def test_tool_choice_in_output_tool_mode_goes_back_to_required() -> None:
    model = Model.scripted([{"tool": "lookup", "args": {"city": "Paris"}},
                            {"tool": "final_result", "args": {"name": "Paris", "population": 2}}])
    Agent(model, tools=[lookup], output_type=City, output_mode="tool").run_sync(
        "?", tool_choice="lookup")
    assert [r.tool_choice for r in model.requests] == ["lookup", "required"]


def test_session_runs_and_the_store_restores_the_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "s.db"
    agent = Agent(Model.scripted([PARIS, '{"x": 1, "y": 2}']), output_type=City)
    session = agent.session(SessionConfig(id="s1", store=SQLiteStore(path)))
    first = session.run_sync("?")
    second = session.run_sync("?", output_type=Point)
    assert first.output == City(name="Paris", population=2100000)
    assert second.output == Point(1.0, 2.0)
    # A new process: the agent's type validates again; another type comes back as JSON data.
    again = Agent(Model.scripted([]), output_type=City).session(
        SessionConfig(id="s1", store=SQLiteStore(path)))
    assert again.result(first.run_id).output == City(name="Paris", population=2100000)
    assert again.result(second.run_id).output == {"x": 1.0, "y": 2.0}
    assert again.result(second.run_id).output_type == "Point"
    plain = Agent(Model.scripted([])).session(SessionConfig(id="s1", store=SQLiteStore(path)))
    restored = plain.result(first.run_id)
    assert restored.output == {"name": "Paris", "population": 2100000} and restored.text == PARIS


def test_run_card_and_messages_df_show_the_parsed_output() -> None:
    pytest.importorskip("pandas")
    from loom_nb.export import messages_df

    session = Agent(Model.scripted([PARIS]), output_type=City).session()
    result = session.run_sync("?")
    text = result.to_text()
    assert 'output (City): {"name": "Paris", "population": 2100000}' in text
    _, html = result._repr_mimebundle_()[0].values()
    assert "<b>output</b>" in html and "&quot;population&quot;: 2100000" in html
    df = messages_df(session)
    answer = df[df["role"] == "assistant"].iloc[-1]
    assert json.loads(answer["output"]) == {"name": "Paris", "population": 2100000}
    assert df[df["role"] == "user"]["output"].isna().all()


def test_quality_gate_output_type_uses_the_same_validation() -> None:
    runtime = Runtime.sdk(quality=QualityGate.output_type(City))
    result = Agent(Model.scripted([f"```json\n{PARIS}\n```"]), runtime=runtime).run_sync("?")
    assert result.ok and result.verdict is not None and result.verdict.passed
    failing = Agent(Model.scripted(["{}"]), runtime=runtime).run_sync("?")
    assert failing.verdict is not None and "name: Field required" in failing.verdict.critique


def test_a_paused_run_resumes_with_its_own_output_type() -> None:
    @tool(requires_approval=True)
    def guarded(city: str) -> str:
        """Needs a person's approval."""
        return city

    model = Model.scripted([{"tool": "guarded", "args": {"city": "Paris"}}, '{"x": 1, "y": 1}'])
    session = Agent(model, tools=[guarded]).session()
    paused = session.run_sync("?", output_type=Point)
    assert paused.status == "needs_approval"
    resumed = paused.approve().resume_sync()
    assert resumed.ok and resumed.output == Point(1.0, 1.0)


def test_replayed_recording_keeps_its_output(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rec.jsonl"
    recorded = Agent(Model.record(Model.scripted([PARIS]), path), output_type=City).run_sync("?")
    replayed = Agent(Model.replay(path), output_type=City).run_sync("?")
    assert recorded.output == replayed.output == City(name="Paris", population=2100000)
    line = json.loads(path.read_text().splitlines()[0])
    assert line["request"]["output"]["name"] == "City"


def test_a_recording_made_with_the_output_tool_replays_with_it(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "rec.jsonl"
    live = Model.scripted([{"tool": "final_result", "args": {"name": "Rome", "population": 2}}])
    live.native_output = False  # as a compatible server: auto mode picks the output tool
    recorded = Agent(Model.record(live, path), output_type=City).run_sync("?")
    replay = Model.replay(path)
    assert replay.native_output is False
    replayed = Agent(replay, output_type=City).run_sync("?")
    assert recorded.output == replayed.output == City(name="Rome", population=2)


def test_best_of_candidates_ask_for_the_runs_output_type() -> None:
    from loom_nb.runtime import Harness

    model = Model.scripted(['{"x": 1, "y": 2}', '{"x": 3, "y": 4}'])
    runtime = Runtime.sdk(quality=QualityGate.check(lambda answer: '"x": 3' in answer),
                          harness=Harness.best_of(2))
    result = Agent(model, runtime=runtime).run_sync("?", output_type=Point)
    assert result.ok and result.output == Point(3.0, 4.0) and result.winner == 2
    assert all(r.output is not None and r.output.name == "Point" for r in model.requests)


async def test_partial_parsing_of_a_long_answer_is_bounded() -> None:
    records = [{"x": i, "y": i / 2} for i in range(400)]
    text = json.dumps({"response": records})
    pieces = [text[i:i + 10] for i in range(0, len(text), 10)]

    async def answer(request: ModelRequest):  # type: ignore[no-untyped-def]
        for piece in pieces:
            yield piece

    stream = Agent(Model.function(answer), output_type=list[Point]).stream("?")
    partial = [e.data async for e in stream if e.type == "output.partial"]
    assert len(pieces) > 900 and 10 < len(partial) < 250  # every delta up to 2 KB, then by 10 %
    assert len(partial[-1]["output"]) > 350 and stream.result is not None
    assert stream.result.output == [Point(**r) for r in records]


async def test_partials_follow_the_answer_not_the_text_around_it() -> None:
    async def bare(request: ModelRequest):  # type: ignore[no-untyped-def]
        for piece in ["[4, ", "5, 6]"]:
            yield piece

    stream = Agent(Model.function(bare), output_type=list[int]).stream("?")
    partial = [e.data["output"] async for e in stream if e.type == "output.partial"]
    assert partial == [[4], [4, 5, 6]]

    from loom_nb.messages import Message, TextPart, ToolCall
    from loom_nb.models import ModelResponse, TextDelta, ToolCallDelta

    class Chatty(Model):  # writes text, then the output tool's arguments
        async def stream(self, request: ModelRequest):  # type: ignore[no-untyped-def, override]
            yield TextDelta("Here {")
            yield ToolCallDelta("c1", "final_result", '{"x": 1, ')
            yield ToolCallDelta("c1", "final_result", '"y": 2}')
            yield ModelResponse(message=Message(role="assistant", parts=(
                TextPart(text="Here {"), ToolCall(id="c1", name="final_result", args={"x": 1, "y": 2}))),
                stop_reason="tool_use")

    stream = Agent(Chatty(), output_type=Point, output_mode="tool").stream("?")
    partial = [e.data async for e in stream if e.type == "output.partial"]
    assert partial == [{"output": {"x": 1}, "valid": False}, {"output": {"x": 1, "y": 2}, "valid": True}]
    assert stream.result is not None and stream.result.output == Point(1.0, 2.0)
