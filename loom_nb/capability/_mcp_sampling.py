"""Answering a server's ``sampling/createMessage``: with whose model, under which governance.

The request is decided by the governance policy of the run whose tool call is in flight, as a
call of a tool named ``{server}__sampling`` (so ``deny=["*__sampling"]``, an allow list, a veto or
``requires_approval=True`` on the capability govern it like any tool). It is answered by the model
given as ``Capability.mcp(..., sampling=model)``, else by the run's agent's model; what the model
used is added to the run's usage (and so to its token limit and cost), and an ``mcp.sampling``
event records the decision and the answer. Outside a run (a tool called directly, a resource read
from code) only an explicit ``sampling=`` model answers, as there is no policy to consult.

The server's numbers are not trusted: ``maxTokens`` is capped at :data:`MAX_TOKENS` and a request
longer than :data:`MAX_REQUEST_CHARS` is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from ..messages import Message, TextPart
from ..tools import Tool
from ._mcp_content import media_text
from ._mcp_requests import (EVENT_TEXT_CHARS, ActiveCall, SamplingRequest, ServerRequests,
                            in_call_context)

if TYPE_CHECKING:
    from mcp_types import CreateMessageRequestParams, CreateMessageResult, ErrorData

    from ..events import McpSamplingData
    from ..governance import GovernanceDecision
    from ..models import Model

__all__ = ["MAX_REQUEST_CHARS", "MAX_TOKENS", "answer_sampling"]

#: The most output tokens a server may ask for in one sampling request.
MAX_TOKENS = 4096
#: The most characters (system prompt and messages) a server's sampling request may have.
MAX_REQUEST_CHARS = 200_000
_STOP = {"end_turn": "endTurn", "max_tokens": "maxTokens", "stop_sequence": "stopSequence"}


async def answer_sampling(requests: ServerRequests, call: ActiveCall | None, ambiguous: str | None,
                          params: CreateMessageRequestParams) -> CreateMessageResult | ErrorData:
    request = SamplingRequest(server=requests.name, tool=call.tool if call else "",
                              system=params.system_prompt or "",
                              messages=tuple(_message(m) for m in params.messages),
                              max_tokens=min(int(params.max_tokens), MAX_TOKENS))
    data: McpSamplingData = {"server": requests.name, "tool": request.tool, "action": "deny",
                             "reason": "", "check": "sampling", "messages": len(request.messages),
                             "max_tokens": request.max_tokens}
    model, refusal = await _decide(requests, call, ambiguous, request, data)
    if model is None:
        data["reason"] = refusal
        requests.record_sampling(call, data)
        return _error(f"Sampling refused by the client: {refusal}")
    from ..models import ModelRequest

    try:
        # In the call's context: a tracing span of the request nests under the call's span.
        response = await in_call_context(call, model.request, ModelRequest(
            system=request.system, messages=request.messages,
            settings={"max_tokens": request.max_tokens}))
    except Exception as exc:  # noqa: BLE001 - reported to the server and recorded
        data["action"], data["model"] = "error", model.identifier
        data["reason"] = f"the model failed: {type(exc).__name__}: {exc}"
        requests.record_sampling(call, data)
        return _error(f"The client's model failed to answer: {type(exc).__name__}")
    if call is not None:
        call.absorb(response.usage)  # the run pays for what its server asked
    text = response.message.text
    data["action"], data["model"] = "allow", response.model_name or model.identifier
    data["usage"], data["text"] = response.usage.to_dict(), text[:EVENT_TEXT_CHARS]
    requests.record_sampling(call, data)
    from mcp_types import CreateMessageResult, TextContent

    return CreateMessageResult(role="assistant", content=TextContent(type="text", text=text),
                               model=response.model_name or model.identifier,
                               stop_reason=_STOP.get(response.stop_reason, response.stop_reason))


async def _decide(requests: ServerRequests, call: ActiveCall | None, ambiguous: str | None,
                  request: SamplingRequest, data: McpSamplingData) -> tuple[Model | None, str]:
    """The model that answers, or None and why the request is refused (``data`` is updated)."""
    if requests.sampling is False:  # not declared; a server that asks anyway is refused
        return None, "sampling is switched off for this server (Capability.mcp(sampling=False))"
    size = len(request.system) + sum(len(m.text) for m in request.messages)
    if size > MAX_REQUEST_CHARS:
        return None, (f"the request has {size} characters, more than the {MAX_REQUEST_CHARS} "
                      f"loom_nb accepts from a server")
    if ambiguous:
        return None, ambiguous
    run = call.run if call is not None else None
    if run is None:
        if requests.sampling is None:
            return None, ("no run is in progress and no sampling= model was given to "
                          "Capability.mcp, so there is no model to answer with")
        data["action"], data["reason"] = "allow", "outside a run: the sampling= model answers"
        return requests.sampling, ""
    decision = _governance(requests, run)
    data["check"] = decision.check
    if decision.action == "ask":
        decision = await _ask(requests, call, request, decision)
        data["check"] = decision.check
    data["reason"] = decision.reason
    if decision.action != "allow":
        return None, decision.reason
    model: Model = requests.sampling or run.agent.model
    return model, ""


def _governance(requests: ServerRequests, run: Any) -> GovernanceDecision:
    from ..governance import ToolRequest

    name = requests.governance_name()
    tool = Tool(function=_never, name=name, description="sampling requests of an MCP server",
                parameters={"type": "object"}, read_only=True,
                requires_approval=requests.requires_approval)
    decision: GovernanceDecision = run.agent.runtime.governance.decide(ToolRequest(
        name=name, args={}, call_id=requests.next_id(), tool=tool, run_id=run.run_id,
        session_id=run.session.id, agent=run.agent.name))
    return decision


async def _ask(requests: ServerRequests, call: ActiveCall | None, request: SamplingRequest,
               decision: GovernanceDecision) -> GovernanceDecision:
    """An ``ask`` cannot pause the run (the server waits inside a tool call): the
    ``approve_sampling=`` callback decides, and without one the request is refused."""
    from ..governance import GovernanceDecision

    if requests.approve_sampling is None:
        return GovernanceDecision(action="deny", check=decision.check, reason=(
            f"{decision.reason} A sampling request arrives inside a tool call, where the run "
            f"cannot pause for a person, so it is refused; pass Capability.mcp(..., "
            f"approve_sampling=callback) to decide such requests in code."))
    verdict = await in_call_context(call, requests.approve_sampling, request)
    if verdict is True:
        return GovernanceDecision(action="allow", check="approval",
                                  reason="approved by the approve_sampling callback")
    return GovernanceDecision(action="deny", check="approval",
                              reason="rejected by the approve_sampling callback")


def _message(sampled: Any) -> Message:
    role: Literal["user", "assistant"] = "assistant" if sampled.role == "assistant" else "user"
    content = sampled.content if isinstance(sampled.content, list) else [sampled.content]
    texts = [item.text if getattr(item, "type", "") == "text" else media_text(item)
             for item in content]
    return Message(role=role, parts=(TextPart(text="\n".join(texts)),))


def _error(message: str) -> ErrorData:
    from mcp_types import INVALID_REQUEST, ErrorData

    return ErrorData(code=INVALID_REQUEST, message=message)


def _never() -> None:  # the synthetic tool that stands for sampling requests is never called
    raise NotImplementedError
