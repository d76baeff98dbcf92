"""The ``%loom`` / ``%%loom`` magics.

A command line is parsed into a :class:`LoomCommand` first (no IPython involved, so the parser is
testable on its own), then executed by :class:`LoomMagics` against the notebook's namespace.

Options are read only at the start of the line; everything after them is the prompt, exactly as
written. The prompt is therefore never split with shell rules, so apostrophes, quotes and JSON
need no escaping (``%loom run -a agent What's {"a": 1}?``). A prompt that itself starts with ``-``
goes after ``--``.
"""

from __future__ import annotations

import keyword
import os
import re
import shlex
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_cell_magic, magics_class, no_var_expand
from IPython.display import display

from .. import _bridge
from .._words import a_type
from ..agent import Agent
from ..errors import CommandError, LoomError, RunCancelled
from ..models import Model
from ..result import RunResult
from ..session import Session, SessionConfig
from .live import LiveDisplay, live_updates_enabled
from .questions import keep_question_marks

__all__ = ["USAGE", "CommandError", "LoomCommand", "LoomMagics", "RunCancelled", "interpolate",
           "keep_question_marks", "parse_command"]

USAGE = """\
%loom run [options] PROMPT        run an agent on PROMPT; the cell shows the run live
%%loom run [options]              the same, with the cell body as the prompt

options:
  -a, --agent NAME     the Agent in variable NAME (default: the one set with %loom agent,
                       else Agent(Model.from_env()) when LOOM_MODEL is set)
  -s, --session NAME   a Session variable, or a session id opened on the agent
                       (default: the one set with %loom session, else one session per agent
                       shared by all its %loom runs, so follow-up cells continue the conversation)
  -o, --out NAME       bind the RunResult to variable NAME
  --no-stream          no live updates, only the final result
  --no-interpolate     keep {name} in the prompt as written
  --                   end of options (for a prompt that starts with '-')

{name} in the prompt is replaced by the value of variable `name` when it exists; other braces
(JSON, for example) stay as written.

Views of the current session (the session of the latest %loom run, else the default
session of the default agent; -a NAME and -s NAME pick another, -o NAME binds the view):
%loom panel                       prompt box, live transcript, and the views below in tabs
%loom context                     the context partitions of the latest request
%loom budget                      tokens used vs available, per request
%loom signals                     signals received, their decisions and what became of them
%loom approvals                   governance decisions; Approve / Reject for waiting calls
%loom trace [RUN_ID]              the timeline of a run (default: the latest) and a rating
%loom report NAME                 the report of an evaluation (a frame from loom_nb.evaluate)

%loom signal [--urgency U] [--source S] [--type T] SUMMARY
                                  send the session a signal and show the decision
                                  (U: low, normal, high or critical)
%loom approve [CALL_ID ...]       approve waiting calls (all by default); the run resumes in
                                  the background
%loom reject [--reason R] [CALL_ID ...]
                                  reject waiting calls (all by default); the model is told R
%loom answer [QUESTION_ID] TEXT   answer the model's question (ask_user); the run resumes
                                  (%%loom answer takes the text as the cell body)

%loom mcp NAME prompts|resources  what the agent's MCP server NAME offers besides tools

%loom agent [NAME]                set (or show) the default agent
%loom session [NAME]              set (or show) the default session
%loom help                        this text"""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NAME_REF = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_TOKEN = re.compile(r"\S+")
_VALUE_OPTIONS = {"-a": "agent", "--agent": "agent", "-s": "session", "--session": "session",
                  "-o": "out", "--out": "out"}
_FLAG_OPTIONS = {"--no-stream": "stream", "--no-interpolate": "interpolate"}
VIEWS = ("panel", "context", "budget", "signals", "approvals", "trace")
ACTIONS = ("run", *VIEWS, "report", "signal", "approve", "reject", "answer", "mcp", "agent",
           "session", "help")
# Options of each command beyond -a/-s/-o: (value options, flags).
_OPTIONS: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "run": ({}, _FLAG_OPTIONS),
    "signal": ({"--urgency": "urgency", "--source": "source", "--type": "signal_type"}, {}),
    "reject": ({"--reason": "reason"}, {}),
}


@dataclass(frozen=True)
class LoomCommand:
    """One parsed ``%loom`` command.

    Attributes:
        action: ``run``, ``agent``, ``session`` or ``help``.
        agent: ``-a``: the variable that holds the agent.
        session: ``-s``: a Session variable or a session id.
        out: ``-o``: the variable to bind the RunResult to.
        stream: False with ``--no-stream``.
        interpolate: False with ``--no-interpolate``.
        prompt: the prompt as written (line rest or cell body), before interpolation.
        target: the NAME of ``%loom agent NAME`` / ``%loom session NAME``.
        args: the words after the options of ``trace`` (a run id), ``approve`` / ``reject``
            (call ids); ``signal`` keeps its summary in ``prompt``.
        urgency, source, signal_type: ``%loom signal`` options.
        reason: ``%loom reject --reason``.
    """

    action: str
    agent: str | None = None
    session: str | None = None
    out: str | None = None
    stream: bool = True
    interpolate: bool = True
    prompt: str = ""
    target: str | None = None
    args: tuple[str, ...] = ()
    urgency: str | None = None
    source: str | None = None
    signal_type: str | None = None
    reason: str | None = None


def parse_command(line: str, cell: str | None = None) -> LoomCommand:
    """Parse a ``%loom`` line (and the cell body of ``%%loom``) into a :class:`LoomCommand`."""
    tokens = list(_TOKEN.finditer(line))
    if not tokens or tokens[0].group() in {"help", "-h", "--help"}:
        return LoomCommand(action="help")
    action = tokens[0].group()
    if action not in ACTIONS:
        raise CommandError(
            f"Unknown %loom command {action!r}. Write `%loom run PROMPT` to run an agent; the "
            f"commands are {', '.join(ACTIONS)} (`%loom help` shows them all)."
        )
    if action in {"agent", "session"}:
        return _parse_setter(action, [t.group() for t in tokens[1:]], cell)
    if action in {"run", "signal", "answer"}:
        return _parse_run(action, line, tokens[1:], cell)
    return _parse_view(action, line[tokens[0].end():], cell)


def _parse_setter(action: str, args: list[str], cell: str | None) -> LoomCommand:
    if cell is not None and cell.strip():
        raise CommandError(f"%%loom {action} takes no cell body; write `%loom {action} NAME`.")
    if len(args) > 1:
        raise CommandError(f"`%loom {action}` takes one name, e.g. `%loom {action} my_{action}`.")
    target = args[0] if args else None
    if action == "agent" and target is not None and not _is_identifier(target):
        raise CommandError(f"`%loom agent` takes a variable name; {target!r} is not one.")
    return LoomCommand(action=action, target=target)


def _parse_options(action: str, words: list[str]) -> tuple[dict[str, Any], int]:
    """Options at the start of ``words``: their values, and the index of the first other word."""
    values_spec, flags = _OPTIONS.get(action, ({}, {}))
    value_options = {**_VALUE_OPTIONS, **values_spec}
    values: dict[str, Any] = {}
    index = 0
    while index < len(words) and words[index].startswith("-"):
        option, _, inline = words[index].partition("=")
        index += 1
        if option == "--":
            break
        if option in flags and not inline:
            values[flags[option]] = False
        elif option in value_options:
            if not inline:
                if index >= len(words):
                    what = "name" if option in _VALUE_OPTIONS else "value"
                    raise CommandError(f"Option {option} needs a {what} after it, e.g. "
                                       f"`{option} {what.upper()}`.")
                inline = words[index]
                index += 1
            values[value_options[option]] = inline
        else:
            known = ", ".join(["-a/--agent", "-s/--session", "-o/--out", *values_spec, *flags])
            raise CommandError(
                f"Unknown option {option!r} for %loom {action}; the options are {known}. To "
                f"start the text with '-', put '--' before it."
            )
    for key in ("agent", "out"):
        if key in values and not _is_identifier(values[key]):
            raise CommandError(f"--{key} takes a variable name; {values[key]!r} is not one.")
    return values, index


def _parse_run(action: str, line: str, tokens: list[re.Match[str]], cell: str | None) -> LoomCommand:
    """``run`` and ``signal``: options, then free text kept exactly as written."""
    values, index = _parse_options(action, [t.group() for t in tokens])
    rest = line[tokens[index].start():].strip() if index < len(tokens) else ""
    if cell is not None and rest and cell.strip():
        what = {"run": "prompt", "signal": "summary"}.get(action, "answer")
        raise CommandError(
            f"Give the {what} either on the %%loom line or in the cell body, not both; "
            f"the line has {rest!r} after the options."
        )
    prompt = cell.strip() if cell is not None and cell.strip() else rest
    return LoomCommand(action=action, prompt=prompt, **values)


def _parse_view(action: str, rest: str, cell: str | None) -> LoomCommand:
    """The views, ``approve`` and ``reject``: options and words (shell quoting for --reason)."""
    if cell is not None and cell.strip():
        raise CommandError(f"%%loom {action} takes no cell body; write `%loom {action}`.")
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise CommandError(f"%loom {action}: {exc}; close the quotes, e.g. "
                           f'`--reason "too risky"`.') from None
    values, index = _parse_options(action, words)
    args = tuple(words[index:])
    most = {"trace": 1, "report": 1, "approve": None, "reject": None, "mcp": 2}.get(action, 0)
    if most is not None and len(args) > most:
        usage = "%loom trace [RUN_ID]" if action == "trace" else f"%loom {action} [options]"
        raise CommandError(f"`{usage}` takes {most or 'no'} more word{'s' if most != 1 else ''}; "
                           f"got {' '.join(args)!r}.")
    return LoomCommand(action=action, args=args, **values)


def _is_identifier(name: str) -> bool:
    return bool(_IDENTIFIER.fullmatch(name)) and not keyword.iskeyword(name)


def interpolate(text: str, namespace: Mapping[str, Any]) -> str:
    """Replace ``{name}`` by ``str(namespace[name])`` where ``name`` is a defined variable.

    Anything else in braces (``{"a": 1}``, ``{undefined}``, ``{x + 1}``) stays exactly as written.
    """
    return _NAME_REF.sub(
        lambda m: str(namespace[m.group(1)]) if m.group(1) in namespace else m.group(0), text
    )


@magics_class
class LoomMagics(Magics):
    """``%loom`` and ``%%loom``. State (defaults and notebook sessions) lives on this object."""

    @property
    def _namespace(self) -> dict[str, Any]:
        """The notebook's variables (``shell`` is None only for magics made outside IPython)."""
        if self.shell is None:
            raise CommandError("%loom runs inside IPython: load it there with %load_ext loom_nb.")
        namespace: dict[str, Any] = self.shell.user_ns
        return namespace

    def __init__(self, shell: Any = None, **kwargs: Any) -> None:
        super().__init__(shell, **kwargs)
        self.default_agent: str | None = None
        self.default_session: str | None = None
        # One notebook-default session per agent, so follow-up cells continue the conversation.
        self._agent_sessions: weakref.WeakKeyDictionary[Agent, Session] = (
            weakref.WeakKeyDictionary())
        # Sessions opened by id are held here, so the same id keeps meaning the same object.
        self._opened: dict[tuple[int, str], Session] = {}
        self._env_agent: tuple[str, Agent] | None = None
        # Where the latest %loom run went: views, signals and approvals without -a / -s look
        # there, so `%loom trace` after `%loom run -a other ...` shows that run. Setting a
        # default agent or session forgets it (the newer choice wins).
        self._last_run_session: weakref.ReferenceType[Session] | None = None

    @no_var_expand
    @line_cell_magic
    def loom(self, line: str, cell: str | None = None) -> None:
        """Run agents from cells: ``%loom run -a agent PROMPT`` or ``%%loom run`` + a prompt body.

        Without ``-s``, all ``%loom run`` cells of one agent share one notebook session, so a
        follow-up cell remembers the conversation; ``-s NAME`` picks another session (a Session
        variable, or a session id), and ``%loom session NAME`` changes the default. ``-o NAME``
        binds the RunResult; ``--no-stream`` shows only the final result. ``{name}`` in the prompt
        is replaced by a variable's value when the variable exists; other braces stay as written.

        Commands: ``%loom run``; the views ``%loom panel``, ``context``, ``budget``, ``signals``,
        ``approvals``, ``trace [RUN_ID]``; ``%loom signal SUMMARY``, ``%loom approve``,
        ``%loom reject``; ``%loom mcp NAME prompts|resources``; ``%loom agent NAME``,
        ``%loom session NAME``, ``%loom help``.
        """
        try:
            command = parse_command(line, cell)
            self.execute(command)
        except (CommandError, LoomError) as exc:
            # A short message instead of a traceback through IPython's magic machinery.
            raise UsageError(str(exc)) from None
        except KeyboardInterrupt:
            # The cell shows the cancelled run already. Raising (not swallowing) makes the cell
            # fail, so "Run all" stops here as it does for any interrupted cell.
            raise RunCancelled(
                "The run was cancelled. The cell shows what it had streamed (marked as cut off), "
                "-o binds its result, and the session keeps everything up to the interruption; "
                "run the cell again to start over."
            ) from None

    # -- commands ----------------------------------------------------------------------------------

    def execute(self, command: LoomCommand) -> RunResult | None:
        """Carry out a parsed command; ``run`` returns its RunResult."""
        if command.action == "help":
            print(USAGE)
        elif command.action == "agent":
            self._set_default_agent(command.target)
        elif command.action == "session":
            self._set_default_session(command.target)
        elif command.action == "run":
            return self._run(command)
        elif command.action == "signal":
            self._signal(command)
        elif command.action in ("approve", "reject"):
            self._decide(command)
        elif command.action == "answer":
            self._answer(command)
        elif command.action == "mcp":
            from .mcp_view import mcp_listing

            agent = self._agent_variable(command.agent) if command.agent else self._default_agent()
            listing = mcp_listing(agent, command.args)
            self._bind(command, listing)
            display(listing)
        elif command.action == "report":
            self._report(command)
        else:
            self._show_view(command)
        return None

    # -- views, signals, approvals -----------------------------------------------------------------

    def _bind(self, command: LoomCommand, value: Any) -> None:
        if command.out is not None:
            self._namespace[command.out] = value

    def _current_session(self, command: LoomCommand) -> Session:
        """The session a view, signal or decision is about (see ``_last_run_session``)."""
        if command.agent is None and command.session is None and self._last_run_session:
            session = self._last_run_session()
            if session is not None and not session.closed:
                return session
        return self._session_for(command)

    def _show_view(self, command: LoomCommand) -> None:
        from .panel import SessionPanel
        from .approvals import ApprovalsView
        from .views import BudgetView, ContextView, SignalsView, TraceView

        session = self._current_session(command)
        kinds: dict[str, Any] = {"panel": SessionPanel, "context": ContextView,
                                 "budget": BudgetView, "signals": SignalsView,
                                 "approvals": ApprovalsView}
        if command.action == "trace":
            view = TraceView(session, run_id=command.args[0] if command.args else None)
        else:
            view = kinds[command.action](session)
        self._bind(command, view)
        display(view)

    def _report(self, command: LoomCommand) -> None:
        """``%loom report NAME``: the report of the evaluation frame (or store path) in NAME,
        with controls for the score, the grouping and the epoch reducer."""
        from .report_view import ReportView

        if not command.args:
            raise CommandError("Write `%loom report NAME`, NAME being the variable that holds "
                               "the frame loom_nb.evaluate() returned (or a store path).")
        name = command.args[0]
        value = self._namespace.get(name, name if name.endswith((".sqlite", ".db")) else None)
        if value is None:
            raise CommandError(f"%loom report: there is no variable {name!r}; pass the name of "
                               f"the variable that holds an evaluation frame.")
        view = ReportView(value)
        self._bind(command, view)
        display(view)

    def _signal(self, command: LoomCommand) -> None:
        from ..display.views import signal_decision_card
        from ..signals import RuntimeSignal

        if not command.prompt.strip():
            raise CommandError("The signal needs a summary: `%loom signal --urgency high Disk "
                               "almost full`.")
        session = self._current_session(command)
        signal = RuntimeSignal(source=command.source or "notebook",
                               type=command.signal_type or "message",
                               urgency=command.urgency or "normal",  # type: ignore[arg-type]
                               summary=command.prompt.strip())
        decision = session.receive_sync(signal)
        self._bind(command, decision)
        display(signal_decision_card(signal.to_dict(), decision.action, decision.reason), raw=True,
                metadata={"loom": {"session_id": session.id, "signal_id": signal.id,
                                   "action": decision.action}})

    def _decide(self, command: LoomCommand) -> None:
        from .approvals import ApprovalsView, waiting_result

        session = self._current_session(command)
        if waiting_result(session) is None:
            raise CommandError(f"No run in session {session.id} is waiting for approval; "
                               f"`%loom approvals` shows its governance decisions.")
        view = ApprovalsView(session)
        view.decide(command.args, approve=command.action == "approve",
                    reason=command.reason or "")
        self._bind(command, view)
        display(view)

    def _answer(self, command: LoomCommand) -> None:
        from .approvals import ApprovalsView, waiting_result

        session = self._current_session(command)
        waiting = waiting_result(session)
        asked = [p.call_id for p in (waiting.pending if waiting is not None else ()) if p.kind == "question"]
        if not asked:
            raise CommandError(f"No question of the model waits in session {session.id}; "
                               f"`%loom approvals` shows what waits.")
        first, _, rest = command.prompt.strip().partition(" ")
        question, text = (first, rest.strip()) if first in asked else (None, command.prompt.strip())
        if not text:
            raise CommandError("Write the answer after the command: `%loom answer TEXT` (or "
                               "`%loom answer QUESTION_ID TEXT`).")
        view = ApprovalsView(session)
        view.answer(question, text)
        self._bind(command, view)
        display(view)

    def _set_default_agent(self, name: str | None) -> None:
        if name is None:
            spec = os.environ.get("LOOM_MODEL", "").strip()
            if self.default_agent is not None:
                current = self.default_agent
            elif spec:  # what _default_agent builds when no -a is given
                current = f"an Agent on LOOM_MODEL={spec} (`%loom agent NAME` to use a variable)"
            else:
                current = "none (use -a NAME, or set LOOM_MODEL)"
            print(f"Default agent: {current}")
            return
        self._agent_variable(name)
        self.default_agent = name
        self._last_run_session = None
        print(f"%loom run now uses the agent {name!r} when no -a is given.")

    def _set_default_session(self, name: str | None) -> None:
        if name is None:
            current = self.default_session or "one notebook session per agent"
            print(f"Default session: {current}")
            return
        self._session_variable(name)  # a variable that is not a Session is refused now
        self.default_session = name
        self._last_run_session = None
        print(f"%loom run now uses the session {name!r} when no -s is given.")

    def _run(self, command: LoomCommand) -> RunResult | None:
        namespace = self._namespace
        prompt = interpolate(command.prompt, namespace) if command.interpolate else command.prompt
        if not prompt.strip():
            raise CommandError(
                "The prompt is empty: write it after the options (`%loom run -a agent Hello`) "
                "or in the cell body under `%%loom run`."
            )
        session = self._session_for(command)
        self._last_run_session = weakref.ref(session)
        live = live_updates_enabled(self.shell, command.stream)
        shown = LiveDisplay(prompt, agent=session.agent.name,
                            model=session.agent.model.identifier, live=live)
        try:
            result = run_in_cell(session, prompt, shown)
        finally:
            # A stopped run is bound too: its result keeps the answer streamed up to the stop.
            if command.out is not None and shown.result is not None:
                namespace[command.out] = shown.result
        if result is not None and result.status == "needs_approval":
            from .approvals import ApprovalsView, bind_when_resumed

            if command.out is not None:
                bind_when_resumed(namespace, command.out, result)
            # The buttons right under the waiting card: the answer shows up where one clicks.
            display(ApprovalsView(result))
        return result

    # -- agents and sessions -----------------------------------------------------------------------

    def _session_for(self, command: LoomCommand) -> Session:
        spec = command.session or self.default_session
        explicit = self._agent_variable(command.agent) if command.agent else None
        bound = self._session_variable(spec) if spec else None
        if bound is not None:
            if explicit is not None and bound.agent is not explicit:
                raise CommandError(
                    f"The session {spec!r} belongs to the agent {bound.agent.name!r}, not to "
                    f"{command.agent!r}; drop -a to use the session's agent, or pick another "
                    f"session with -s."
                )
            return bound
        agent = explicit or self._default_agent()
        if spec is None:
            session = self._agent_sessions.get(agent)
            if session is None or session.closed:
                session = self._agent_sessions[agent] = agent.session()
            return session
        key = (id(agent), spec)
        session = self._opened.get(key)
        if session is None or session.closed or session.agent is not agent:
            session = self._opened[key] = agent.session(SessionConfig(id=spec))
        return session

    def _agent_variable(self, name: str) -> Agent:
        namespace = self._namespace
        if name not in namespace:
            agents = sorted(k for k, v in namespace.items()
                            if isinstance(v, Agent) and not k.startswith("_"))
            hint = (f" Agents defined here: {', '.join(agents)}." if agents else
                    " Define one first, e.g. `agent = Agent(Model.from_env())`.")
            raise CommandError(f"There is no variable named {name!r} in the notebook.{hint}")
        value = namespace[name]
        if not isinstance(value, Agent):
            raise CommandError(
                f"{name!r} is {a_type(value)}, not an Agent; pass the variable that "
                f"holds your Agent, e.g. `%loom run -a agent ...`."
            )
        return value

    def _session_variable(self, name: str) -> Session | None:
        """The Session in variable ``name``; None when ``name`` is not a variable (a session id)."""
        if name not in self._namespace:
            return None
        value = self._namespace[name]
        if not isinstance(value, Session):
            raise CommandError(
                f"-s {name}: the variable {name!r} is {a_type(value)}, not a Session. "
                f"Pass a Session (`{name} = agent.session()`), or a session id that is not the "
                f"name of a variable."
            )
        return value

    def _default_agent(self) -> Agent:
        if self.default_agent is not None:
            return self._agent_variable(self.default_agent)
        spec = os.environ.get("LOOM_MODEL", "").strip()
        if not spec:
            raise CommandError(
                "No agent to run. Give one in any of three ways: `-a NAME` with a variable that "
                "holds an Agent; `%loom agent NAME` to make it the default; or set LOOM_MODEL "
                "(e.g. LOOM_MODEL=anthropic:claude-sonnet-5, with its API key) for an agent "
                "built from that model."
            )
        if self._env_agent is None or self._env_agent[0] != spec:
            # Kept, so that runs without -a share one agent and therefore one session.
            self._env_agent = (spec, Agent(Model.from_env()))
        return self._env_agent[1]


def run_in_cell(session: Session, prompt: str, display: LiveDisplay) -> RunResult | None:
    """Run ``prompt`` in ``session`` on the background loop, drawing it in the current cell.

    An interrupt (the notebook's stop button) cancels the run; the cell then shows the cancelled
    run, and ``KeyboardInterrupt`` propagates (see :meth:`LoomMagics.loom`).
    """
    stream = session.stream(prompt)

    async def consume() -> RunResult | None:
        async for event in stream:
            display.on_event(event)
        return stream.result

    display.start()
    try:
        result = _bridge.run_sync(consume())
    except KeyboardInterrupt:
        display.finish(stream.result, note="interrupted before the run started")
        raise
    except BaseException:
        display.finish(stream.result, note="stopped by an error")
        raise
    display.finish(result, note="the run ended without a result")
    return result
