"""Model-chosen patterns that cannot stall the process, and a walk over directory descriptors.

Patterns come from the model, so each must cost time linear in what it is matched against:

- ``files__search(regex=True)`` uses RE2 (``google-re2``, imported lazily), whose matching time
  is linear in the text for every pattern. Python's ``re`` backtracks: ``(a+)+$`` on a line of
  thirty 'a's and a '!' takes minutes, and a tool thread cannot be stopped. A pattern RE2 cannot
  compile (backreferences, lookaround) is an error that says what RE2 supports.
- Plain-text search uses ``str`` containment (a linear two-way search), ``casefold`` for
  ``ignore_case``: no regular expression at all.
- Glob and ``include`` patterns go through ``fnmatch``, which since Python 3.9 translates ``*``
  into atomic groups (no exponential backtracking); they are matched one file name at a time
  (at most 255 bytes) and their length is capped. ``**`` is one state of a small automaton, so
  ``**/**/**`` costs what ``**`` costs (pathlib's glob multiplies the walk per ``**``).

The walk opens each directory relative to its parent's descriptor with ``O_NOFOLLOW``, so it
never leaves the root even while directories are being swapped for links; it stops after
``MAX_VISITS`` entries or ``MAX_DEPTH`` levels and says so.
"""

from __future__ import annotations

import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ToolError
from ._paths import DIR_FLAGS

__all__ = ["Budget", "MAX_PATTERN", "Matcher", "compile_glob", "compile_matcher", "glob_step", "scan",
           "subdir"]

MAX_PATTERN = 1000  # characters in a search, glob or include pattern
MAX_DEPTH = 64  # directory levels a glob or search goes down (one descriptor open per level)
MAX_VISITS = 200_000  # directory entries one glob or search looks at
_MAX_SEGMENTS = 32

_RE2_HINT = ("RE2 syntax is Perl's without backreferences (\\1) and without lookaround "
             "((?=...), (?!...), (?<=...), (?<!...)); character classes, alternation, "
             "repetition {n,m} up to 1000, (?i) and \\b work")


# -- search patterns -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Matcher:
    """A search pattern, in linear time: on one line, and on a whole file at once.

    ``line`` is the meaning (a line without its line ending matches). ``anywhere`` is a quick
    first look at a whole file: False only when no line of it can match, so most files cost one
    call into RE2 rather than one per line (a call costs about a microsecond of overhead).
    """

    line: Callable[[str], bool]
    anywhere: Callable[[str], bool]


# Without these a match on a line is also a match in the whole text in multi-line mode: \A and
# \z anchor to the whole text, and (?-m) turns multi-line mode off.
_NOT_WHOLE = re.compile(r"\\[Az]|\(\?[imsU]*-[imsU]*m")


def compile_matcher(pattern: str, *, regex: bool, ignore_case: bool, tool: str) -> Matcher:
    """The matcher of a model's search pattern (see the module docstring)."""
    if not pattern:
        raise ToolError("pattern is empty; pass the text to search for.")
    _check_length(pattern, "pattern")
    if not regex:
        if ignore_case:
            folded = pattern.casefold()
            return Matcher(lambda line: folded in line.casefold(),
                           lambda text: folded in text.casefold())
        return Matcher(lambda line: pattern in line, lambda text: pattern in text)
    compiled = _re2_compile(pattern, ignore_case, tool)
    line: Callable[[str], bool] = lambda text: compiled.search(text) is not None  # noqa: E731
    if _NOT_WHOLE.search(pattern):
        return Matcher(line, lambda text: True)
    try:
        whole = _re2_compile("(?m)" + pattern, ignore_case, tool)
    except ToolError:  # too large with the flag: look at every line instead
        return Matcher(line, lambda text: True)
    # the lines of a file end in \n, \r\n or \r; multi-line mode knows \n only
    return Matcher(line, lambda text: whole.search(
        text.replace("\r\n", "\n").replace("\r", "\n")) is not None)


def _re2_compile(pattern: str, ignore_case: bool, tool: str) -> Any:
    try:
        import re2
    except ImportError:
        raise ToolError(f"{tool}: regex=true needs the google-re2 package, which is not "
                        f"installed (pip install 'loom-nb[files]'). Until then, search with "
                        f"regex=false for the text as written.") from None
    options = re2.Options()
    options.case_sensitive = not ignore_case
    options.log_errors = False  # RE2 would print every bad pattern to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(
            exc.args[0], bytes) else str(exc)
        raise ToolError(f"{pattern!r} is not a valid regular expression for RE2 ({reason}). "
                        f"{_RE2_HINT}. Fix the pattern, or pass regex=false to search for the "
                        f"text as written.") from None


def _check_length(pattern: str, what: str) -> None:
    if len(pattern) > MAX_PATTERN:
        raise ToolError(f"The {what} is {len(pattern)} characters long; at most {MAX_PATTERN} "
                        f"are accepted. Pass a shorter {what}.")


def name_matches(include: str | None) -> Callable[[str], bool]:
    """The ``include`` filter on file names (fnmatch, case-sensitive like the file system)."""
    if not include:
        return lambda name: True
    _check_length(include, "include pattern")
    return lambda name: fnmatch.fnmatchcase(name, include)


# -- glob --------------------------------------------------------------------------------------------


def compile_glob(pattern: str) -> tuple[str, ...]:
    """The segments of a relative glob, consecutive '**' merged (one state of the automaton)."""
    parts = pattern.split("/")
    if not pattern or pattern.startswith("/") or ".." in parts:
        raise ToolError(f"Glob pattern {pattern!r} must be relative and must not contain "
                        f"'..'; pass a pattern like '**/*.py' and a start directory as path.")
    _check_length(pattern, "glob pattern")
    segments: list[str] = []
    for part in parts:
        if part in ("", "."):
            continue
        if "**" in part and part != "**":
            raise ToolError(f"Invalid glob pattern {pattern!r}: '**' can only be an entire "
                            f"path component (like 'src/**/*.py').")
        if not (part == "**" and segments and segments[-1] == "**"):
            segments.append(part)
    if not segments:
        raise ToolError(f"Glob pattern {pattern!r} matches nothing; pass one like '*.py'.")
    if len(segments) > _MAX_SEGMENTS:
        raise ToolError(f"Glob pattern {pattern!r} has more than {_MAX_SEGMENTS} components; "
                        f"pass a shorter one.")
    return tuple(segments)


def glob_start(segments: tuple[str, ...]) -> frozenset[int]:
    return _closure({0}, segments)


def glob_step(states: frozenset[int], name: str, segments: tuple[str, ...]) -> frozenset[int]:
    """The states after matching one more path component ``name``."""
    after = set()
    for i in states:
        if i == len(segments):
            continue
        if segments[i] == "**":
            after.add(i)
        elif fnmatch.fnmatchcase(name, segments[i]):
            after.add(i + 1)
    return _closure(after, segments)


def _closure(states: set[int], segments: tuple[str, ...]) -> frozenset[int]:
    # '**' also matches no component at all; merged '**' make one step enough
    return frozenset(states | {i + 1 for i in states if i < len(segments)
                               and segments[i] == "**"})


# -- the walk ----------------------------------------------------------------------------------------


@dataclass
class Budget:
    """How much of the tree one call may look at; ``cut`` says where it stopped early."""

    visits: int = MAX_VISITS
    cut: list[str] = field(default_factory=list)

    def spend(self) -> bool:
        self.visits -= 1
        if self.visits == 0:
            self.cut.append(f"looked at {MAX_VISITS} entries")
        return self.visits >= 0


def scan(dir_fd: int, budget: Budget) -> Iterator[tuple[str, str]]:
    """(name, kind) of each entry of an open directory, sorted; kind in dir/file/link/other."""
    try:
        with os.scandir(dir_fd) as listing:
            entries = sorted(listing, key=lambda e: e.name)
    except OSError:
        return
    for entry in entries:
        if not budget.spend():
            return
        yield entry.name, _kind(entry)


def _kind(entry: os.DirEntry[str]) -> str:
    try:
        if entry.is_symlink():
            return "link"
        if entry.is_dir(follow_symlinks=False):
            return "dir"
        if entry.is_file(follow_symlinks=False):
            return "file"
    except OSError:
        pass
    return "other"


def subdir(parent: int, name: str, depth: int, budget: Budget) -> int | None:
    """A descriptor of a subdirectory, or None when it is (now) something else or too deep."""
    if depth >= MAX_DEPTH:
        if not budget.cut:
            budget.cut.append(f"went {MAX_DEPTH} directories deep")
        return None
    try:
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError:
        return None  # swapped for a link, removed or unreadable since the listing
    if not stat.S_ISDIR(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd
