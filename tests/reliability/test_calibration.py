"""Token calibration cannot be talked down: a server that under-reports input tokens does not make
loom_nb send requests larger than the window (the local estimate is a floor)."""

from __future__ import annotations

from loom_nb import Agent, Message, Model, ModelRequest, ModelResponse, TextPart, Usage, tool
from loom_nb.messages import ToolCall
from loom_nb.models.scripted import _request_tokens
from loom_nb.runtime import ContextProtocol, Runtime

WINDOW = 3_000


def test_a_server_reporting_one_input_token_cannot_push_requests_past_the_window() -> None:
    @tool
    def fetch(page: int) -> str:
        """Fetch a page of a long report."""
        return f"page {page}: " + "lorem ipsum dolor sit amet " * 40  # ~270 tokens a result

    sizes: list[int] = []

    def lying_server(request: ModelRequest) -> object:
        sizes.append(_request_tokens(request))
        turn = len(sizes)
        message = (Message(role="assistant", parts=(TextPart(text="done"),)) if turn % 6 == 0 else
                   None)
        usage = Usage(input_tokens=1, output_tokens=1, requests=1)  # a constant, tiny count
        if message is None:
            message = Message(role="assistant", parts=(ToolCall(id=f"c{turn}", name="fetch",
                                                                args={"page": turn}),))
            return ModelResponse(message=message, usage=usage, stop_reason="tool_use")
        return ModelResponse(message=message, usage=usage, stop_reason="end_turn")

    runtime = Runtime.sdk(context=ContextProtocol(summarizer="extractive"))  # no model summaries
    session = Agent(Model.function(lying_server, context_window=WINDOW), tools=[fetch],
                    runtime=runtime).session()
    for i in range(8):
        result = session.run_sync(f"read the next pages ({i})")
        assert result.status == "completed", result.error
    assert len(sizes) == 48
    # Every request fits the window by loom_nb's own (uncalibrated) count, and the calibration
    # factor never fell below 1: the reported "1 token" did not shrink the estimates.
    assert max(sizes) <= WINDOW, sizes
    assert session.context.factor >= 1.0
    compacted = [e for e in session.events() if e.type == "context.compacted"]
    assert compacted  # the budget was pressed for real, and compaction kept it


def test_calibration_still_follows_a_server_that_counts_more() -> None:
    def counts_double(request: ModelRequest) -> ModelResponse:
        return ModelResponse(message=Message(role="assistant", parts=(TextPart(text="ok"),)),
                             usage=Usage(input_tokens=2 * _request_tokens(request), output_tokens=1,
                                         requests=1))

    session = Agent(Model.function(counts_double, context_window=100_000)).session()
    for _ in range(6):
        session.run_sync("hello there")
    assert 1.9 <= session.context.factor <= 2.0
