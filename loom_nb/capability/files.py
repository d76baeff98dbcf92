"""Capability.files: list, read, glob and search files under a root; write and edit when allowed.

Tools (``name`` defaults to ``"files"``):

- ``files__list(path)``, ``files__read(path, offset, limit)``, ``files__glob(pattern, path)``,
  ``files__search(pattern, path, include, regex, ignore_case)``: marked ``read_only``, so they
  also run under ``GovernancePolicy(read_only=True)``.
- ``files__write(path, content, overwrite)`` and ``files__edit(path, old_string, new_string,
  replace_all)``: only when ``read_only=False``. They are *not* read-only (governance read-only
  mode denies them) and *not* marked destructive.

Why write/edit are not destructive: ``read_only=False`` is the person's consent to change files
under the root, and a destructive flag would make the default governance ask before every write,
which would turn that consent into a prompt per call. What could destroy data is guarded inside
the tools instead: ``write`` refuses to replace an existing file unless the model passes
``overwrite=true`` (so a model that did not look first cannot clobber a file by accident), ``edit``
replaces only an exact string that occurs once (or ``replace_all=true``), and there is no delete.
Pass ``approve_writes=True`` to make every write and edit wait for a person's approval.

Every path goes through :class:`loom_nb.capability._paths.Root`: ``..`` out of the root, absolute
paths elsewhere and symbolic links that lead out are refused with a message to the model, and
nothing is read or written. Every access walks from a descriptor of the root without letting the
kernel follow a link, so a directory swapped for a link meanwhile cannot lead out either; links
that stay inside the root keep working. A file with several hard links is not read (its other
name may be outside the root) unless ``allow_hardlinks=True``. Search patterns run on RE2 and
glob patterns on a small automaton, so no pattern the model picks can stall the process (see
:mod:`loom_nb.capability._search`).
"""

from __future__ import annotations

import io
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import IO, Any

from ..errors import ConfigError, ToolError
from ..tools import Tool, tool
from . import Capability
from ._paths import FILE_FLAGS, Missing, Outside, Place, Root, is_binary, read_head
from ._search import (Budget, Matcher, compile_glob, compile_matcher, glob_start, glob_step,
                      name_matches, scan, subdir)

__all__ = ["files_capability"]

# Directories that hold tooling, not the user's files; search skips them unless the search starts
# inside one (a search of "." in a project would otherwise spend its results on .venv).
_SKIP_DIRS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv", "venv",
                        ".mypy_cache", ".pytest_cache", ".ruff_cache", ".tox",
                        ".ipynb_checkpoints"})
_SEARCH_FILE_LIMIT = 10_000_000  # bytes; bigger files are skipped by search (and reported)
_MATCH_CHARS = 300  # a matching line is cut to this many characters in search results


def files_capability(root: str | os.PathLike[str] = ".", read_only: bool = True, *,
                     name: str = "files", max_read_bytes: int = 100_000,
                     max_results: int = 200, approve_writes: bool = False,
                     allow_hardlinks: bool = False, **unknown: Any) -> Capability:
    """The files capability (see the module docstring); ``Capability.files`` calls this."""
    if unknown:
        raise ConfigError(f"Capability.files() got unknown options {sorted(unknown)}; it takes "
                          f"root, read_only, name, max_read_bytes, max_results, approve_writes, "
                          f"allow_hardlinks.")
    for option, value in (("max_read_bytes", max_read_bytes), ("max_results", max_results)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Capability.files({option}=...) takes a positive int, got "
                              f"{value!r}.")
    hint = f"; use {name}__list or {name}__glob to find the right path"
    files = _Files(Root(root, what="Capability.files", missing_hint=hint), name, max_read_bytes,
                   max_results, allow_hardlinks)
    tools = [
        tool(name=f"{name}__list", read_only=True, thread=True)(files.list_dir),
        tool(name=f"{name}__read", read_only=True, thread=True)(files.read),
        tool(name=f"{name}__glob", read_only=True, thread=True)(files.glob),
        tool(name=f"{name}__search", read_only=True, thread=True)(files.search),
    ]
    if not read_only:
        tools += [tool(name=f"{name}__write", requires_approval=approve_writes, thread=True)(files.write),
                  tool(name=f"{name}__edit", requires_approval=approve_writes, thread=True)(files.edit)]
    return Capability(name=name, toolset=tuple(tools), kind="files",
                      instructions=_instructions(files.root, name, tools, read_only))


def _instructions(root: Root, name: str, tools: list[Tool], read_only: bool) -> str:
    mode = "read-only" if read_only else "read and write"
    names = ", ".join(t.name for t in tools)
    text = (f"Files ({mode}) under the root {str(root)!r}. Paths are relative to this root; an "
            f"absolute path must lie inside it, and nothing outside it can be reached (not "
            f"through '..' nor through symbolic links). Tools: {names}. {name}__read takes "
            f"offset/limit to read a range of lines of a long file.")
    if not read_only:
        text += (f" Read a file before changing it; {name}__edit replaces an exact string, "
                 f"{name}__write creates a file (overwrite=true to replace one).")
    return text


class _Files:
    """The tool functions, bound to one root and its limits (docstrings are the tool docs)."""

    def __init__(self, root: Root, name: str, max_read_bytes: int, max_results: int,
                 allow_hardlinks: bool) -> None:
        self.root = root
        self.name = name
        self.max_read_bytes = max_read_bytes
        self.max_results = max_results
        self.allow_hardlinks = allow_hardlinks

    # -- read-only tools ---------------------------------------------------------------------------

    # Not named `list`: in this class body that would shadow the builtin in every annotation.
    def list_dir(self, path: str = ".") -> str:
        """List the entries of a directory: subdirectories end with '/', files show their size.

        Args:
            path: the directory, relative to the root ('.' is the root itself).
        """
        with self.root.open(path, tool=f"{self.name}__list", want="dir") as place:
            if not place.is_dir:
                raise ToolError(f"{path!r} is a file, not a directory; read it with "
                                f"{self.name}__read.")
            with os.scandir(place.open_dir()) as listing:
                entries = sorted(listing, key=lambda e: e.name)
            lines = [self._entry_line(place, entry) for entry in entries[: self.max_results]]
            header = f"{place.display}/ ({len(entries)} entries)"
        if len(entries) > self.max_results:
            lines.append(f"[... {len(entries) - self.max_results} more entries not shown; use "
                         f"{self.name}__glob with a pattern to narrow them down]")
        return "\n".join([header, *lines]) if lines else f"{header}: empty directory"

    def _entry_line(self, place: Place, entry: os.DirEntry[str]) -> str:
        try:
            if entry.is_symlink():
                return self._link_line(place.child(entry.name), entry.name)
            if entry.is_dir(follow_symlinks=False):
                return f"{entry.name}/"
            return f"{entry.name}  ({entry.stat(follow_symlinks=False).st_size} bytes)"
        except OSError:
            return entry.name

    def _link_line(self, path: str, name: str) -> str:
        """Where a link inside the root leads, found by the same safe walk as every access."""
        try:
            with self.root.entry(path, tool=f"{self.name}__list") as target:
                if target.stat is None:
                    return f"{name} (broken symbolic link)"
                suffix = "/" if target.is_dir else ""
                return f"{name}{suffix} -> {target.display}{suffix}"
        except Outside:
            return f"{name} (symbolic link leading outside the root; cannot be used)"
        except Missing:
            return f"{name} (broken symbolic link)"
        except ToolError:
            return f"{name} (symbolic link that cannot be followed)"

    def read(self, path: str, offset: int = 1, limit: int | None = None) -> str:
        """Read a text file, whole or a range of lines.

        Args:
            path: the file, relative to the root.
            offset: the first line to return (1 is the first line of the file).
            limit: how many lines to return; omit to read to the end (up to the size limit).
        """
        if offset < 1:
            raise ToolError("offset is a line number starting at 1; pass offset=1 or more.")
        if limit is not None and limit < 1:
            raise ToolError("limit is a number of lines; pass 1 or more, or omit it.")
        with self._text_file(path, "read") as (place, info):
            with open(place.open_file()[0], "rb", closefd=False) as handle:
                chunk = _read_lines(handle, offset, limit, self.max_read_bytes)
        size = info.st_size
        if chunk.first is None:
            if offset == 1:
                return "(the file is empty)"
            raise ToolError(f"{path!r} has only {chunk.seen} lines; pass an offset of at most "
                            f"{max(chunk.seen, 1)}.")
        text = b"".join(chunk.lines).decode("utf-8", errors="replace")
        return text + self._read_marker(chunk, offset, limit, size)

    def _read_marker(self, chunk: _Chunk, offset: int, limit: int | None, size: int) -> str:
        last = chunk.last
        more = f"call {self.name}__read with offset={last + 1} to read on"
        if chunk.cut_line:
            return (f"\n[truncated: line {last} alone is longer than the read limit of "
                    f"{self.max_read_bytes} bytes; only its start is shown. The file has {size} "
                    f"bytes; {more}.]")
        if chunk.hit_bytes:
            return (f"\n[truncated at the read limit of {self.max_read_bytes} bytes: lines "
                    f"{offset}-{last} shown of a {size}-byte file; {more} (a smaller limit "
                    f"keeps each answer short).]")
        if chunk.more:
            return f"\n[lines {offset}-{last} shown; the file continues: {more}.]"
        return ""

    def glob(self, pattern: str, path: str = ".") -> str:
        """Find files and directories whose path matches a glob pattern, like '**/*.py'.

        Args:
            pattern: a glob relative to ``path``: '*' within a name, '**' across directories.
            path: the directory to search from, relative to the root.
        """
        segments = compile_glob(pattern)
        walk = _Walk(Budget())
        with self.root.open(path, tool=f"{self.name}__glob", want="dir") as base:
            if not base.is_dir:
                raise ToolError(f"{path!r} is a file; pass the directory to search from as path.")
            self._glob_dir(base.open_dir(), base.parts, glob_start(segments), segments, walk, 0)
        notes = self._limit_note(walk.found, "paths", "a narrower pattern")
        if walk.outside:
            notes.append(f"[{walk.outside} matches skipped: symbolic links leading outside the "
                         f"root]")
        notes += walk.notes("a narrower pattern or path")
        if not walk.found:
            return "\n".join([f"No paths match {pattern!r} under {path!r}.", *notes])
        return "\n".join([*sorted(walk.found), *notes])

    def _glob_dir(self, fd: int, parts: list[str], states: frozenset[int],
                  segments: tuple[str, ...], walk: _Walk, depth: int) -> bool:
        """Match one directory's entries and go down where the pattern can still match."""
        for name, kind in scan(fd, walk.budget):
            after = glob_step(states, name, segments)
            matched, deeper = len(segments) in after, any(i < len(segments) for i in after)
            rel = [*parts, name]
            if kind == "link":  # shown when it stays inside; linked directories are not entered
                if matched or deeper:
                    self._glob_link("/".join(rel), matched, walk)
            elif matched:
                walk.found.append("/".join(rel) + ("/" if kind == "dir" else ""))
            if len(walk.found) > self.max_results:
                return True
            if kind == "dir" and deeper:
                child = subdir(fd, name, depth + 1, walk.budget)
                if child is not None:
                    try:
                        if self._glob_dir(child, rel, after, segments, walk, depth + 1):
                            return True
                    finally:
                        os.close(child)
        return False

    def _glob_link(self, rel: str, matched: bool, walk: _Walk) -> None:
        try:
            with self.root.entry(rel, tool=f"{self.name}__glob") as target:
                if matched:
                    walk.found.append(rel + ("/" if target.is_dir else ""))
        except Outside:
            walk.outside += 1
        except ToolError:
            pass  # a broken link or a loop: nothing to show

    def _limit_note(self, found: list[str], what: str, advice: str) -> list[str]:
        if len(found) <= self.max_results:
            return []
        del found[self.max_results:]
        return [f"[stopped after {self.max_results} {what}; use {advice} to see the rest]"]

    def search(self, pattern: str, path: str = ".", include: str | None = None,
               regex: bool = False, ignore_case: bool = False) -> str:
        """Search text files for a string or regular expression; results are 'path:line: text'.

        Args:
            pattern: the text to find (an RE2 regular expression when regex is true: Perl-like
                syntax without backreferences or lookaround).
            path: a file or directory to search, relative to the root.
            include: only search files whose name matches this glob, like '*.py'.
            regex: treat pattern as a regular expression instead of plain text.
            ignore_case: match regardless of case.
        """
        tool = f"{self.name}__search"
        walk = _Walk(Budget(), matcher=compile_matcher(pattern, regex=regex,
                                                       ignore_case=ignore_case, tool=tool),
                     wanted=name_matches(include), room=self.max_results + 1)
        with self.root.open(path, tool=tool, want="any") as base:
            if base.is_dir:
                self._search_dir(base.open_dir(), base.parts, walk, 0)
            elif base.fd is not None:
                self._search_file(base.fd, base.display, walk)
            else:
                raise ToolError(f"{path!r} is not a regular file (a pipe, socket or device); "
                                f"pass a text file or a directory.")
        notes = self._limit_note(walk.found, "matches",
                                 "path=, include= or a more specific pattern")
        if walk.skipped:
            notes.append(f"[{walk.skipped} files skipped: unreadable or larger than "
                         f"{_SEARCH_FILE_LIMIT} bytes]")
        if walk.linked:
            notes.append(f"[{walk.linked} files skipped: they have several hard links, so they "
                         f"may be files outside the root; a person can allow them with "
                         f"Capability.files(..., allow_hardlinks=True)]")
        notes += walk.notes("path= or include=")
        if not walk.found:
            return "\n".join([f"No matches for {pattern!r} under {path!r}.", *notes])
        return "\n".join([*walk.found, *notes])

    def _search_dir(self, fd: int, parts: list[str], walk: _Walk, depth: int) -> bool:
        entries = list(scan(fd, walk.budget))
        for name, kind in entries:
            if kind in ("file", "link") and walk.wanted(name):
                self._search_entry(fd, "/".join([*parts, name]), name, kind, walk)
                if len(walk.found) >= walk.room:
                    return True
        for name, kind in entries:
            if kind == "dir" and name not in _SKIP_DIRS:
                child = subdir(fd, name, depth + 1, walk.budget)
                if child is not None:
                    try:
                        if self._search_dir(child, [*parts, name], walk, depth + 1):
                            return True
                    finally:
                        os.close(child)
        return False

    def _search_entry(self, parent: int, rel: str, name: str, kind: str, walk: _Walk) -> None:
        if kind == "link":  # followed by the safe walk; links that lead out are not searched
            try:
                with self.root.open(rel, tool=f"{self.name}__search", want="file") as target:
                    if target.fd is not None:
                        self._search_file(target.fd, rel, walk)
            except ToolError:
                pass
            return
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=parent)
        except OSError:
            walk.skipped += 1  # unreadable, or swapped for a link since the listing
            return
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                self._search_file(fd, rel, walk)
        finally:
            os.close(fd)

    def _search_file(self, fd: int, shown: str, walk: _Walk) -> None:
        try:
            info = os.fstat(fd)
            if info.st_size > _SEARCH_FILE_LIMIT:
                walk.skipped += 1
            elif info.st_nlink > 1 and not self.allow_hardlinks:
                walk.linked += 1
            elif not is_binary(read_head(fd)):
                walk.found.extend(_matches(fd, shown, walk))
        except OSError:
            walk.skipped += 1

    # -- writing tools -----------------------------------------------------------------------------

    def write(self, path: str, content: str, overwrite: bool = False) -> str:
        """Create a text file with the given content (parent directories are created).

        Args:
            path: the file to write, relative to the root.
            content: the complete new content of the file.
            overwrite: replace the file if it already exists (its old content is lost).
        """
        with self.root.entry(path, tool=f"{self.name}__write", create_dirs=True) as place:
            old = place.stat
            if place.name is None or place.is_dir:
                raise ToolError(f"{path!r} is a directory; pass the path of a file inside it.")
            if old is not None and not stat.S_ISREG(old.st_mode):
                raise ToolError(f"{path!r} is not a regular file (a pipe, socket or device); "
                                f"{self.name}__write replaces regular files only.")
            if old is not None and not overwrite:
                raise ToolError(
                    f"{path!r} already exists and was not changed. To change part of it, read "
                    f"it and use {self.name}__edit; to replace it entirely, call "
                    f"{self.name}__write again with overwrite=true.")
            data = content.encode("utf-8")
            mode = stat.S_IMODE(old.st_mode) if old is not None else None
            _replace_file(place.parent, place.name, data, path, mode)
            shown = place.display
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        verb = "Replaced" if old is not None else "Created"
        return f"{verb} {shown}: {len(data)} bytes, {lines} lines."

    def edit(self, path: str, old_string: str, new_string: str, replace_all: bool = False) -> str:
        """Replace an exact string in a text file; it must occur exactly once unless replace_all.

        Args:
            path: the file to edit, relative to the root.
            old_string: the exact text to replace, including whitespace and indentation.
            new_string: the text to put in its place.
            replace_all: replace every occurrence instead of requiring exactly one.
        """
        if old_string == "":
            raise ToolError(f"old_string is empty; pass the exact text to replace (to create a "
                            f"file, use {self.name}__write).")
        if old_string == new_string:
            raise ToolError("old_string and new_string are the same; nothing to change.")
        with self._text_file(path, "edit") as (place, info):
            with open(place.open_file()[0], "rb", closefd=False) as handle:
                raw = handle.read()
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ToolError(f"{path!r} is not UTF-8 text; {self.name}__edit refuses to "
                                f"change it so that its encoding is not corrupted.") from None
            if old_string not in text and "\r\n" in text and "\r\n" not in old_string:
                # The model writes '\n'; a file with Windows line endings should still match.
                old_string, new_string = (s.replace("\n", "\r\n")
                                          for s in (old_string, new_string))
            count = text.count(old_string)
            self._check_count(path, text, old_string, count, replace_all)
            first = text[: text.index(old_string)].count("\n") + 1
            # the new content replaces the entry in the very directory it was read from
            _replace_file(place.parent, place.parts[-1], text.replace(
                old_string, new_string).encode("utf-8"), path, stat.S_IMODE(info.st_mode))
            shown = place.display
        return (f"Edited {shown}: replaced {count} occurrence{'s' if count > 1 else ''} (first "
                f"at line {first}).")

    def _check_count(self, path: str, text: str, old_string: str, count: int,
                     replace_all: bool) -> None:
        if count == 0:
            raise ToolError(
                f"old_string was not found in {path!r}; nothing was changed. Read the file "
                f"again with {self.name}__read and copy the exact text, including whitespace "
                f"and indentation.")
        if count > 1 and not replace_all:
            raise ToolError(
                f"old_string occurs {count} times in {path!r} (lines "
                f"{_lines_of(text, old_string)}); nothing was changed. Include more surrounding "
                f"text so that it occurs exactly once, or pass replace_all=true to replace all.")

    # -- helpers -----------------------------------------------------------------------------------

    @contextmanager
    def _text_file(self, path: str, action: str) -> Iterator[tuple[Place, os.stat_result]]:
        """The open place of a regular text file, and its fstat."""
        with self.root.open(path, tool=f"{self.name}__{action}", want="file") as place:
            if place.is_dir:
                raise ToolError(f"{path!r} is a directory; list it with {self.name}__list.")
            if place.fd is None:  # a FIFO or device would block the read forever
                raise ToolError(f"{path!r} is not a regular file (a pipe, socket or device); "
                                f"{self.name}__{action} works on regular files only.")
            info = os.fstat(place.fd)
            if info.st_nlink > 1 and not self.allow_hardlinks:
                raise ToolError(
                    f"{path!r} has {info.st_nlink} hard links: the same file may also be "
                    f"somewhere outside the root, so {self.name}__{action} does not open it. A "
                    f"person can allow this with Capability.files(..., allow_hardlinks=True).")
            if is_binary(read_head(place.fd)):
                raise ToolError(f"{path!r} is a binary file ({info.st_size} bytes); "
                                f"{self.name}__{action} works on text files only.")
            yield place, info


class _Walk:
    """What one glob or search found and skipped on its way through the tree."""

    def __init__(self, budget: Budget, *, matcher: Matcher | None = None,
                 wanted: Callable[[str], bool] | None = None, room: int = 0) -> None:
        self.budget = budget
        self.matcher = matcher or Matcher(lambda line: False, lambda text: False)
        self.wanted = wanted or (lambda name: True)
        self.room = room  # matches still wanted (search)
        self.found: list[str] = []
        self.outside = 0  # links leading out (glob)
        self.skipped = 0  # unreadable or too large (search)
        self.linked = 0  # files with several hard links (search)

    def notes(self, advice: str) -> list[str]:
        return [f"[stopped early: the walk {cut}; use {advice} to look at less]"
                for cut in self.budget.cut]


def _matches(fd: int, shown: str, walk: _Walk) -> list[str]:
    with open(fd, "rb", closefd=False) as handle:  # at most _SEARCH_FILE_LIMIT bytes
        text = handle.read().decode("utf-8", errors="replace")
    if not walk.matcher.anywhere(text):
        return []
    hits: list[str] = []
    room = walk.room - len(walk.found)
    # newline="": lines end at \n, \r\n or \r, as in the file, and keep their ending
    for number, line in enumerate(io.StringIO(text, newline=""), start=1):
        if walk.matcher.line(line.rstrip("\r\n")):
            shown_line = line.strip()
            if len(shown_line) > _MATCH_CHARS:
                shown_line = shown_line[:_MATCH_CHARS] + " [...]"
            hits.append(f"{shown}:{number}: {shown_line}")
            if len(hits) >= room:
                break
    return hits


class _Chunk:
    """The lines :func:`_read_lines` took, and why it stopped."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.first: int | None = None  # number of the first line taken
        self.last = 0  # number of the last line taken
        self.seen = 0  # lines read from the file
        self.more = False  # the file goes on after the last line taken
        self.hit_bytes = False  # stopped at the byte limit
        self.cut_line = False  # one line alone exceeded the byte limit and was cut


def _read_lines(handle: IO[bytes], offset: int, limit: int | None, budget: int) -> _Chunk:
    chunk = _Chunk()
    used = 0
    for number, line, complete in _iter_lines(handle, budget):
        chunk.seen = number
        if number < offset:
            continue
        if limit is not None and number >= offset + limit:
            chunk.more = True
            break
        if used + len(line) > budget or not complete:
            chunk.more = chunk.hit_bytes = True
            if not chunk.lines:  # a single huge line: show its start rather than nothing
                chunk.lines.append(line[:budget])
                chunk.first = chunk.last = number
                chunk.cut_line = True
            break
        chunk.lines.append(line)
        used += len(line)
        chunk.first = chunk.first or number
        chunk.last = number
    return chunk


def _iter_lines(handle: IO[bytes], cap: int) -> Iterator[tuple[int, bytes, bool]]:
    """(number, line, complete) for each line, reading at most ``cap + 1`` bytes of any line.

    A line longer than ``cap`` is yielded cut (complete=False) and the rest of it skipped, so a
    one-line 2 GB file costs no more memory than a short one.
    """
    number = 0
    while True:
        line = handle.readline(cap + 1)
        if not line:
            return
        number += 1
        complete = len(line) <= cap or line.endswith(b"\n")
        yield number, line, complete
        while not line.endswith(b"\n"):  # drain the rest of an over-long line
            line = handle.readline(1 << 16)
            if not line:
                return


def _lines_of(text: str, needle: str, show: int = 5) -> str:
    numbers: list[str] = []
    start = 0
    while len(numbers) < show and (index := text.find(needle, start)) != -1:
        numbers.append(str(text.count("\n", 0, index) + 1))
        start = index + 1
    return ", ".join(numbers) + (", ..." if text.count(needle) > show else "")


def _replace_file(parent: int, name: str, data: bytes, shown: str, mode: int | None) -> None:
    """Write ``data`` to a temporary file in the directory ``parent``, then rename it to ``name``.

    Both happen relative to the directory's descriptor, so the file lands in the directory that
    was checked even if a path to it is swapped for a link meanwhile. The rename is atomic: a
    reader sees the old or the new content, never half; and if a link was put at ``name`` after
    the check, the rename replaces the link, not its target. The data is flushed to disk before
    the rename, so a crash leaves the old file or the new one, not an empty one.
    """
    tmp = f".{name[:200]}.{secrets.token_hex(4)}.tmp"
    try:
        # 0o666 goes through the umask like any new file; O_EXCL|O_NOFOLLOW: never reuse a name
        # that someone else put there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666, dir_fd=parent)
    except OSError as exc:
        raise ToolError(f"Cannot write {shown!r}: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            if mode is not None:
                os.fchmod(out.fileno(), mode)  # keep an existing file's permissions (a script)
            os.fsync(out.fileno())
        os.replace(tmp, name, src_dir_fd=parent, dst_dir_fd=parent)
    except OSError as exc:
        try:
            os.unlink(tmp, dir_fd=parent)
        except OSError:
            pass
        raise ToolError(f"Cannot write {shown!r}: {exc.strerror}.") from None
