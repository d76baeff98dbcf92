"""Which programs a shell command line runs, read by parsing it: the ground for shell vetoes.

A substring match on the command (``" rm " in command``) is bypassed by ``rm\\tx``, ``/bin/rm``,
``;rm``, ``r''m``, ``\\rm``, ``$x``, ``$(...)``, ``eval``, ``sh -c``, ``xargs rm``, ``find -delete``
and more. ``scan_command`` parses the line with bashlex (lazily imported) and returns the basename
of every command word after quote removal, in pipelines, lists, compound commands, functions,
and command and process substitutions. It fails closed: where the program cannot be known from
the text (a command word that is not a literal, a substitution the parser does not expose, syntax
it cannot parse, a program that runs the command in its arguments), it says why in ``unknown``,
and the vetoes built on it ask (or deny) for such a command.

What parsing cannot see is said in docs/governance.md: what the programs it names do themselves
(a script, ``make``, a copy of ``rm`` under another name, git aliases, awk's ``system()``).
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from ..governance import GovernanceDecision, ToolRequest, Veto

__all__ = ["CommandScan", "ask_before", "deny_commands", "scan_command"]

_INSTALL_HINT = "pip install 'loom-nb[shell]'"
# Longer command lines are not parsed (the parser is recursive and slow on megabytes of text).
_MAX_LENGTH = 100_000
# A command word the shell takes as written: no expansion, glob or brace left after quote removal.
_LITERAL = re.compile(r"[A-Za-z0-9_./+@%:,~-]+\Z")
# Where the shell starts a command the parser must have seen: every one of these in the text
# must open a substitution node, or a command is hidden (in ${x:-$(rm y)}, in a here-document).
_SUBSTITUTION = re.compile(r"\$\(|`|[<>]\(")
_NODE_KINDS = frozenset({
    "list", "pipeline", "command", "compound", "function", "if", "for", "while", "until", "word",
    "assignment", "redirect", "reservedword", "operator", "pipe", "parameter", "tilde",
    "heredoc", "commandsubstitution", "processsubstitution"})
# Programs whose arguments are a command or code, so the program they run is not a command word.
_SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "fish", "csh", "tcsh",
                     "busybox", "toybox"})
_RUNNERS = frozenset({
    "eval", "exec", "command", "builtin", "source", ".", "alias", "trap", "fc", "hash", "enable",
    "env", "xargs", "parallel", "nohup", "nice", "ionice", "time", "timeout", "setsid",
    "stdbuf", "unbuffer", "chroot", "sudo", "doas", "su", "runuser", "pkexec", "strace",
    "ltrace", "watch", "flock", "taskset", "chrt", "script", "systemd-run", "at", "batch",
    "nsenter", "unshare", "fakeroot", "firejail", "ssh", "tmux", "screen", "expect"})
# Interpreters, with the short options that take code on the command line (``python -c``).
_INTERPRETERS = {"python": "c", "pypy": "c", "perl": "eE", "ruby": "e", "node": "ep",
                 "php": "r", "lua": "e", "tclsh": "", "osascript": "e", "pwsh": "c",
                 "deno": "", "bun": "e"}
_INLINE_CODE_LONG = frozenset({"--eval", "--print", "--command", "eval"})
_FIND_ACTIONS = frozenset({"-exec", "-execdir", "-ok", "-okdir", "-delete"})
# Where the shell looks programs up: a command that sets it decides what a name runs.
_LOOKUP_VARIABLES = frozenset({"PATH", "BASH_ENV", "ENV", "IFS"})


@dataclass(frozen=True)
class CommandScan:
    """What the text of a command line says about the programs it runs.

    Attributes:
        commands: the basename of every literal command word, in the order they appear.
        unknown: why some program it runs cannot be known from the text (empty when none).
    """

    commands: tuple[str, ...]
    unknown: tuple[str, ...] = field(default=())


def scan_command(command: str) -> CommandScan:
    """Parse ``command`` as the shell would and list the programs it runs (see the module)."""
    bashlex = _bashlex()
    if len(command) > _MAX_LENGTH:
        return CommandScan((), (f"it is longer than {_MAX_LENGTH} characters",))
    try:
        trees = bashlex.parse(command)
    except Exception as exc:  # bashlex raises parse errors, NotImplementedError and worse
        return CommandScan((), (f"it cannot be parsed ({_short(str(exc) or type(exc).__name__)})",))
    scanner = _Scanner(command)
    for tree in trees:
        scanner.visit(tree)
    scanner.check_hidden_substitutions()
    return CommandScan(tuple(scanner.commands), tuple(dict.fromkeys(scanner.unknown)))


class _Scanner:
    def __init__(self, source: str) -> None:
        self.source = source
        self.commands: list[str] = []
        self.unknown: list[str] = []
        self.seen: set[int] = set()  # where the substitutions the parser saw open (and close)

    def visit(self, node: Any) -> None:
        kind = node.kind
        if kind not in _NODE_KINDS:
            self.unknown.append(f"it uses syntax the check does not know ({kind})")
            return
        if kind in ("commandsubstitution", "processsubstitution"):
            start, end = node.pos
            self.seen.update((start, end - 1) if self.source[start] == "`" else (start,))
        elif kind == "command":
            self.command(node)
        for child in _children(node):
            self.visit(child)

    def command(self, node: Any) -> None:
        words = [part for part in node.parts if part.kind == "word"]
        for part in node.parts:
            if part.kind == "assignment" and part.word.split("=", 1)[0] in _LOOKUP_VARIABLES:
                self.unknown.append(f"it sets {part.word.split('=', 1)[0]}")
        if not words:
            return
        first = words[0]
        raw = self.source[first.pos[0]:first.pos[1]]
        if any(part.kind != "tilde" for part in first.parts) or not _LITERAL.match(first.word):
            self.unknown.append(f"the program name {_short(raw)!r} is not a plain word")
            return
        name = first.word.rstrip("/").rsplit("/", 1)[-1] or first.word
        self.commands.append(name)
        reason = _runs_other_programs(name.casefold(), [w.word for w in words[1:]])
        if reason:
            self.unknown.append(reason)

    def check_hidden_substitutions(self) -> None:
        for match in _SUBSTITUTION.finditer(self.source):
            if match.start() not in self.seen:
                self.unknown.append(f"{match.group()!r} at position {match.start()} opens a "
                                    f"command the parser cannot show (inside ${{...}}, a "
                                    f"here-document or quotes)")
                return


def _children(node: Any) -> list[Any]:
    found: list[Any] = []
    for attribute in ("parts", "list", "redirects"):
        found.extend(getattr(node, attribute, None) or ())
    for attribute in ("command", "output", "heredoc"):
        child = getattr(node, attribute, None)
        if hasattr(child, "kind"):  # a redirect's output is a number in `2>&1`
            found.append(child)
    return found


def _runs_other_programs(name: str, args: list[str]) -> str | None:
    """Why the program ``name`` runs programs of its own choosing, if it does."""
    if name in _SHELLS:
        return f"{name} runs shell code the check cannot read"
    if name in _RUNNERS:
        return f"{name} runs the command or code in its arguments"
    if name == "find" and _FIND_ACTIONS.intersection(args):
        return "find runs commands or deletes files (-exec, -ok, -delete)"
    if name in ("export", "readonly", "declare", "typeset", "local"):
        changed = [a.split("=", 1)[0] for a in args if a.split("=", 1)[0] in _LOOKUP_VARIABLES]
        return f"it sets {changed[0]}" if changed else None
    interpreter = re.sub(r"[0-9.]+\Z", "", name)
    if interpreter in _INTERPRETERS:
        letters = _INTERPRETERS[interpreter]
        for arg in args:
            short = arg.startswith("-") and not arg.startswith("--")
            if arg in _INLINE_CODE_LONG or short and any(c in letters for c in arg[1:]):
                return f"{name} {arg} runs code the check cannot read"
    return None


def _short(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _bashlex() -> Any:
    try:
        import bashlex
    except ImportError as exc:
        raise ConfigError(f"Checking shell commands needs bashlex. Install it with "
                          f"{_INSTALL_HINT}.") from exc
    return bashlex


def _checked_names(commands: Iterable[str], who: str) -> frozenset[str]:
    names = [commands] if isinstance(commands, str) else list(commands)
    if isinstance(commands, str) or not names or not all(
            isinstance(n, str) and n and "/" not in n and not n.isspace() for n in names):
        raise ConfigError(f"{who}(commands) takes a list of program names such as ['rm', 'mv'] "
                          f"(names, not paths: /bin/rm is matched as rm), got {commands!r}.")
    _bashlex()  # fail now, not at the first tool call
    return frozenset(n.casefold() for n in names)


def _objection(request: ToolRequest, tool: str,
               names: frozenset[str]) -> tuple[str, bool] | None:
    """(reason, whether a listed program was found), or None when the command is fine."""
    if not fnmatch.fnmatchcase(request.name, tool):
        return None
    command = request.args.get("command")
    if not isinstance(command, str):
        return f"Cannot tell which programs the command runs: it is {command!r}.", False
    scan = scan_command(command)
    hits = list(dict.fromkeys(c for c in scan.commands if c.casefold() in names))
    if hits:
        return f"The command runs {', '.join(hits)}.", True
    if scan.unknown:
        return f"Cannot tell which programs the command runs: {'; '.join(scan.unknown)}.", False
    return None


def ask_before(commands: Iterable[str], *, tool: str = "shell__run") -> Veto:
    """A governance veto: ask a person before a shell command that runs one of ``commands``.

    It also asks when the programs a command runs cannot be known from its text (see
    ``scan_command``). ``tool`` is the fnmatch pattern of the shell tool's name
    (``"sh__run"`` for ``Capability.shell(name="sh")``); other tools pass untouched.
    """
    names = _checked_names(commands, "ask_before")

    def veto(request: ToolRequest) -> GovernanceDecision | None:
        objection = _objection(request, tool, names)
        return GovernanceDecision.ask(objection[0]) if objection else None

    veto.__name__ = veto.__qualname__ = f"ask_before({sorted(names)})"
    return veto


def deny_commands(commands: Iterable[str], *, tool: str = "shell__run") -> Veto:
    """A governance veto: refuse shell commands that run one of ``commands``, or that cannot be
    checked; the model reads the reason and can write the command another way."""
    names = _checked_names(commands, "deny_commands")

    def veto(request: ToolRequest) -> GovernanceDecision | None:
        objection = _objection(request, tool, names)
        if objection is None:
            return None
        reason, listed = objection
        advice = (" Those programs are not allowed here; do it another way or ask the user."
                  if listed else " Write it with plain program names (no variables, "
                  "substitutions, eval, sh -c, xargs or find -exec) so that it can be checked.")
        return GovernanceDecision.deny(reason + advice)

    veto.__name__ = veto.__qualname__ = f"deny_commands({sorted(names)})"
    return veto
