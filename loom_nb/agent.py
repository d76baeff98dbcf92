"""Agent: the user-side specification of an agent. It is data; runs and sessions execute it."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any, Unpack

from . import _bridge
from .capability import Capability
from .context import render_system
from .errors import ConfigError
from .instructions import Instructions, instruction_parts, joined
from .models import Model, ToolDefinition, resolve_model
from .output import OutputMode, OutputSpec, RunOptions, output_spec
from .result import RunResult
from .runtime import Runtime
from .session import RunStream, Session, SessionConfig
from .signals import SignalAdapter, SignalDecision
from .store import InMemoryStore
from .task import Prompt, RunContext
from .tools import Tool, as_tool

__all__ = ["Agent"]


class Agent:
    """An agent: a model, instructions, capabilities and tools, under a runtime.

    Args:
        model: a :class:`Model`, or a ``"provider:name"`` string such as
            ``"anthropic:claude-sonnet-5"``.
        instructions: the system instructions: a str, a function (sync or async) of the run's
            RunContext evaluated once per run, or a list of these.
        capabilities: bundles of tools (``Capability.tools(...)``).
        tools: functions or ``@tool``s, added to the capabilities' tools.
        runtime: limits and policies; ``Runtime.sdk()`` when not given.
        name: a label for displays, traces and DataFrames.
        deps_type: the type every run's ``deps=`` must have (checked with isinstance when the
            run starts; None: any).
        output_type: the type every run's answer must validate as (``result.output`` is then a
            ``T``); a pydantic model, dataclass, TypedDict, scalar, ``list[...]`` or union.
        output_mode: ``"auto"`` (native structured output where the model has it, else an
            output tool), ``"native"`` or ``"tool"``; see :mod:`loom_nb.output`.
        output_retries: how often an answer that does not validate goes back to the model with
            its errors before the run fails (default 1).

    ``agent.run(...)`` runs once, with no history; ``agent.session(...)`` keeps history across
    runs.
    """

    def __init__(
        self,
        model: Model | str,
        instructions: Instructions = "",
        *,
        capabilities: Iterable[Capability] = (),
        tools: Iterable[Tool | Callable[..., Any]] = (),
        runtime: Runtime | None = None,
        name: str = "agent",
        deps_type: Any = None,
        output_type: Any = None,
        output_mode: OutputMode = "auto",
        output_retries: int | None = None,
    ) -> None:
        self.model: Model = resolve_model(model)
        #: The structured output every run asks for (None: a text answer).
        self.output: OutputSpec | None = output_spec(output_type, output_mode, output_retries)
        self.instructions = instructions
        self.capabilities: tuple[Capability, ...] = tuple(capabilities)
        for cap in self.capabilities:
            if not isinstance(cap, Capability):
                raise ConfigError(
                    f"Agent(capabilities=...) takes Capability objects, got {type(cap).__name__}; "
                    f"wrap functions with Capability.tools(...) or pass them as tools=[...]."
                )
        if isinstance(tools, Tool) or callable(tools):
            raise ConfigError("Agent(tools=...) takes a list of tools, e.g. tools=[get_weather].")
        self.runtime = runtime or Runtime.sdk()
        if not isinstance(self.runtime, Runtime):
            raise ConfigError("Agent(runtime=...) takes a Runtime, e.g. Runtime.sdk(max_turns=20).")
        self.name = name
        self.deps_type = deps_type
        self._static: list[tuple[Tool, str]] = _tool_entries(
            self.capabilities, tools, self.runtime.delegation.tools)
        #: The tools by name. Tools from a capability's source (an MCP server) join on first run.
        self.tools: dict[str, Tool] = _by_name(self._static)
        self._resolved = not any(c.source for c in self.capabilities)
        #: The labelled parts of the system partition (instructions, then capabilities').
        self.instruction_parts = instruction_parts(
            instructions, [(c.name, c.instructions) for c in self.capabilities if c.kind != "skills"])
        #: The static parts, rendered: what a run sends when no part is a function.
        self.static_system_parts: list[tuple[str, str]] | None = (
            None if any(p.dynamic for p in self.instruction_parts)
            else [(p.label, str(p.source)) for p in self.instruction_parts])
        # Skill capabilities' instructions (the skill index) form their own partition.
        #: The system partition's text without the parts made per run by functions.
        self.system_prompt = joined([(p.label, str(p.source)) for p in self.instruction_parts
                                     if not p.dynamic])
        self.skill_prompt = render_system(
            "", [c.instructions for c in self.capabilities if c.kind == "skills"])
        self.tool_definitions: tuple[ToolDefinition, ...] = tuple(t.definition for t in self.tools.values())
        self._sessions: weakref.WeakValueDictionary[tuple[int, str], Session] = weakref.WeakValueDictionary()
        self._inbox: Session | None = None

    def __repr__(self) -> str:
        return (f"Agent(name={self.name!r}, model={self.model.identifier!r}, "
                f"tools={list(self.tools)})")

    async def resolve_tools(self) -> dict[str, Tool]:
        """All tools, after asking each capability's source for its tools: once, and again when
        a source says its tools changed (an MCP server's ``tools/list_changed``)."""
        if not self._resolved or any(getattr(c.source, "tools_changed", False)
                                     for c in self.capabilities):
            entries = list(self._static)
            for cap in self.capabilities:
                if cap.source is not None:
                    entries += [(t, cap.name) for t in await cap.source.list_tools()]
            self.tools = _by_name(entries)
            self.tool_definitions = tuple(t.definition for t in self.tools.values())
            self._resolved = True
        return self.tools

    async def aclose(self) -> None:
        """Close what the capabilities opened (MCP servers); the agent can be used again after."""
        for cap in self.capabilities:
            if cap.source is not None:
                await cap.source.aclose()
        await self.model.aclose()
        self._resolved = not any(c.source for c in self.capabilities)
        self.tools = _by_name(self._static)

    def close(self) -> None:
        """:meth:`aclose` from sync code."""
        _bridge.run_sync(self.aclose())

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -- one-off runs ------------------------------------------------------------------------------

    def _one_off(self) -> Session:
        # Each one-off run gets a private session in a private store: no history carries over,
        # and nothing accumulates in the process-wide store.
        return Session(self, SessionConfig(store=InMemoryStore()))

    async def run(self, prompt_or_task: Prompt, context: RunContext | None = None,
                  **options: Unpack[RunOptions]) -> RunResult:
        """Run once on a prompt (a str, or a list of str, Image and Document) or a
        :class:`RuntimeTask` and return the :class:`RunResult`.

        Options: ``output_type``, ``output_mode``, ``output_retries`` (override the agent's for
        this run), ``tool_choice`` (``"auto"``, ``"required"``, ``"none"`` or a tool name) and
        ``deps`` (for the tools' and instruction functions' RunContext)."""
        return await self._one_off().run(prompt_or_task, context, **options)

    def run_sync(self, prompt_or_task: Prompt, context: RunContext | None = None,
                 **options: Unpack[RunOptions]) -> RunResult:
        """:meth:`run` from sync code; works inside a running event loop such as a Jupyter cell."""
        return _bridge.run_sync(self.run(prompt_or_task, context, **options))

    def stream(self, prompt_or_task: Prompt, context: RunContext | None = None,
               **options: Unpack[RunOptions]) -> RunStream:
        """Run once and yield its :class:`RunEvent` s as they happen (``async for``)."""
        return self._one_off().stream(prompt_or_task, context, **options)

    async def receive(self, event_or_signal: Any, adapter: SignalAdapter | None = None) -> SignalDecision:
        """Send a signal to the agent's inbox session (``agent.inbox``); see Session.receive."""
        return await self.inbox.receive(event_or_signal, adapter)

    @property
    def inbox(self) -> Session:
        """The session that signals sent to the agent itself go to (in memory, made on first use)."""
        if self._inbox is None or self._inbox.closed:
            self._inbox = self.session(SessionConfig(id=f"inbox-{self.name}-{id(self):x}"))
        return self._inbox

    # -- sessions ----------------------------------------------------------------------------------

    def session(self, config: SessionConfig | None = None) -> Session:
        """Open a session; an id that exists in the store restores its history.

        Opening the same id on the same store twice in one process returns the same Session.
        """
        if config is not None and not isinstance(config, SessionConfig):
            raise ConfigError("agent.session() takes a SessionConfig(id=..., store=..., metadata=...).")
        if config is not None and config.id is not None:
            from .store import open_store

            key = (id(open_store(config.store)), config.id)
            existing = self._sessions.get(key)
            if existing is not None and not existing.closed:
                existing.metadata.update(config.metadata)
                return existing
        session = Session(self, config)
        self._sessions[(id(session.store), session.id)] = session
        return session

    def _forget(self, session: Session) -> None:
        self._sessions.pop((id(session.store), session.id), None)


def _tool_entries(capabilities: tuple[Capability, ...], tools: Iterable[Tool | Callable[..., Any]],
                  delegation: tuple[Tool, ...]) -> list[tuple[Tool, str]]:
    entries = [(t, cap.name) for cap in capabilities for t in cap.toolset]
    entries += [(as_tool(t), "tools=") for t in tools]
    entries += [(t, "the delegation policy") for t in delegation]
    _by_name(entries)  # fail now on duplicate names, not at the first run
    return entries


def _by_name(entries: list[tuple[Tool, str]]) -> dict[str, Tool]:
    collected: dict[str, Tool] = {}
    sources: dict[str, str] = {}
    for item, source in entries:
        if item.name in collected:
            where = (f"both from {source}" if sources[item.name] == source
                     else f"from {sources[item.name]} and {source}")
            raise ConfigError(
                f"Two tools are named {item.name!r} ({where}); rename one with @tool(name=...)."
            )
        collected[item.name] = item
        sources[item.name] = source
    return collected
