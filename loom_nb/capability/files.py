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
nothing is read or written.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from ..errors import ConfigError, ToolError
from ..tools import Tool, tool
from . import Capability
from ._paths import Root, is_binary, read_head

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
                     **unknown: Any) -> Capability:
    """The files capability (see the module docstring); ``Capability.files`` calls this."""
    if unknown:
        raise ConfigError(f"Capability.files() got unknown options {sorted(unknown)}; it takes "
                          f"root, read_only, name, max_read_bytes, max_results, approve_writes.")
    for option, value in (("max_read_bytes", max_read_bytes), ("max_results", max_results)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"Capability.files({option}=...) takes a positive int, got "
                              f"{value!r}.")
    files = _Files(Root(root, what="Capability.files"), name, max_read_bytes, max_results)
    tools = [
        tool(name=f"{name}__list", read_only=True, thread=True)(files.list),
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

    def __init__(self, root: Root, name: str, max_read_bytes: int, max_results: int) -> None:
        self.root = root
        self.name = name
        self.max_read_bytes = max_read_bytes
        self.max_results = max_results

    # -- read-only tools ---------------------------------------------------------------------------

    def list(self, path: str = ".") -> str:
        """List the entries of a directory: subdirectories end with '/', files show their size.

        Args:
            path: the directory, relative to the root ('.' is the root itself).
        """
        real = self._existing(path, "list")
        if not real.is_dir():
            raise ToolError(f"{path!r} is a file, not a directory; read it with {self.name}__read.")
        lines = []
        entries = sorted(os.scandir(real), key=lambda e: e.name)
        for entry in entries[: self.max_results]:
            lines.append(self._entry_line(entry))
        header = f"{self.root.display(real)}/ ({len(entries)} entries)"
        if len(entries) > self.max_results:
            lines.append(f"[... {len(entries) - self.max_results} more entries not shown; use "
                         f"{self.name}__glob with a pattern to narrow them down]")
        return "\n".join([header, *lines]) if lines else f"{header}: empty directory"

    def _entry_line(self, entry: os.DirEntry[str]) -> str:
        if entry.is_symlink():
            target = os.path.realpath(entry.path)
            if not self.root.contains(target):
                return f"{entry.name} (symbolic link leading outside the root; cannot be used)"
            if not os.path.exists(target):
                return f"{entry.name} (broken symbolic link)"
            suffix = "/" if os.path.isdir(target) else ""
            return f"{entry.name}{suffix} -> {self.root.display(target)}{suffix}"
        if entry.is_dir():
            return f"{entry.name}/"
        try:
            return f"{entry.name}  ({entry.stat().st_size} bytes)"
        except OSError:
            return entry.name

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
        real = self._text_file(path, "read")
        size = real.stat().st_size
        with open(real, "rb") as handle:
            chunk = _read_lines(handle, offset, limit, self.max_read_bytes)
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
        if not pattern or Path(pattern).is_absolute() or ".." in Path(pattern).parts:
            raise ToolError(f"Glob pattern {pattern!r} must be relative and must not contain "
                            f"'..'; pass a pattern like '**/*.py' and a start directory as path.")
        base = self._existing(path, "glob")
        if not base.is_dir():
            raise ToolError(f"{path!r} is a file; pass the directory to search from as path.")
        found: list[str] = []
        outside = 0
        try:
            matches = base.glob(pattern)
            for match in matches:
                if not self.root.contains(os.path.realpath(match)):
                    outside += 1
                    continue
                found.append(self.root.display(match) + ("/" if match.is_dir() else ""))
                if len(found) > self.max_results:
                    break
        except ValueError as exc:  # e.g. '**' inside a name
            raise ToolError(f"Invalid glob pattern {pattern!r}: {exc}.") from None
        notes = self._limit_note(found, "paths", "a narrower pattern")
        if outside:
            notes.append(f"[{outside} matches skipped: symbolic links leading outside the root]")
        if not found:
            return "\n".join([f"No paths match {pattern!r} under {path!r}.", *notes])
        return "\n".join([*sorted(found), *notes])

    def _limit_note(self, found: list[str], what: str, advice: str) -> list[str]:
        if len(found) <= self.max_results:
            return []
        del found[self.max_results:]
        return [f"[stopped after {self.max_results} {what}; use {advice} to see the rest]"]

    def search(self, pattern: str, path: str = ".", include: str | None = None,
               regex: bool = False, ignore_case: bool = False) -> str:
        """Search text files for a string or regular expression; results are 'path:line: text'.

        Args:
            pattern: the text to find (a Python regular expression when regex is true).
            path: a file or directory to search, relative to the root.
            include: only search files whose name matches this glob, like '*.py'.
            regex: treat pattern as a regular expression instead of plain text.
            ignore_case: match regardless of case.
        """
        if not pattern:
            raise ToolError("pattern is empty; pass the text to search for.")
        flags = re.IGNORECASE if ignore_case else 0
        try:
            matcher = re.compile(pattern if regex else re.escape(pattern), flags)
        except re.error as exc:
            raise ToolError(f"{pattern!r} is not a valid regular expression ({exc}); fix it, or "
                            f"pass regex=false to search for the text as written.") from None
        base = self._existing(path, "search")
        found: list[str] = []
        skipped = 0
        for file in self._walk(base, include):
            try:
                if file.stat().st_size > _SEARCH_FILE_LIMIT:
                    skipped += 1
                    continue
                if is_binary(read_head(file)):
                    continue
                found.extend(self._matches(file, matcher, self.max_results + 1 - len(found)))
            except OSError:
                skipped += 1
            if len(found) > self.max_results:
                break
        notes = self._limit_note(found, "matches", "path=, include= or a more specific pattern")
        if skipped:
            notes.append(f"[{skipped} files skipped: unreadable or larger than "
                         f"{_SEARCH_FILE_LIMIT} bytes]")
        if not found:
            return "\n".join([f"No matches for {pattern!r} under {path!r}.", *notes])
        return "\n".join([*found, *notes])

    def _walk(self, base: Path, include: str | None) -> Iterator[Path]:
        if base.is_file():
            yield base
            return
        for folder, dirs, names in os.walk(base):  # followlinks=False: linked dirs stay out
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            for file_name in sorted(names):
                if include and not fnmatch.fnmatch(file_name, include):
                    continue
                file = Path(folder, file_name)
                # a symlinked file inside the tree may point anywhere: check where it leads
                if self.root.contains(os.path.realpath(file)) and os.path.isfile(file):
                    yield file

    def _matches(self, file: Path, matcher: re.Pattern[str], room: int) -> list[str]:
        shown = self.root.display(file)
        hits = []
        with open(file, encoding="utf-8", errors="replace", newline="") as handle:
            for number, line in enumerate(handle, start=1):
                if matcher.search(line):
                    text = line.strip()
                    if len(text) > _MATCH_CHARS:
                        text = text[:_MATCH_CHARS] + " [...]"
                    hits.append(f"{shown}:{number}: {text}")
                    if len(hits) >= room:
                        break
        return hits

    # -- writing tools -----------------------------------------------------------------------------

    def write(self, path: str, content: str, overwrite: bool = False) -> str:
        """Create a text file with the given content (parent directories are created).

        Args:
            path: the file to write, relative to the root.
            content: the complete new content of the file.
            overwrite: replace the file if it already exists (its old content is lost).
        """
        real = self.root.resolve(path, tool=f"{self.name}__write")
        if real.is_dir():
            raise ToolError(f"{path!r} is a directory; pass the path of a file inside it.")
        existed = real.exists()
        if existed and not overwrite:
            raise ToolError(
                f"{path!r} already exists and was not changed. To change part of it, read it "
                f"and use {self.name}__edit; to replace it entirely, call {self.name}__write "
                f"again with overwrite=true.")
        try:
            real.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ToolError(f"Cannot create the directory for {path!r}: {exc.strerror}.") from None
        data = content.encode("utf-8")
        _replace_file(real, data, path)
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        verb = "Replaced" if existed else "Created"
        return f"{verb} {self.root.display(real)}: {len(data)} bytes, {lines} lines."

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
        real = self._text_file(path, "edit")
        try:
            text = real.read_bytes().decode("utf-8")
        except UnicodeDecodeError:
            raise ToolError(f"{path!r} is not UTF-8 text; {self.name}__edit refuses to change it "
                            f"so that its encoding is not corrupted.") from None
        if old_string not in text and "\r\n" in text and "\r\n" not in old_string:
            # The model writes '\n'; a file with Windows line endings should still match.
            old_string, new_string = (s.replace("\n", "\r\n") for s in (old_string, new_string))
        count = text.count(old_string)
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
        first = text[: text.index(old_string)].count("\n") + 1
        _replace_file(real, text.replace(old_string, new_string).encode("utf-8"), path)
        return (f"Edited {self.root.display(real)}: replaced {count} occurrence"
                f"{'s' if count > 1 else ''} (first at line {first}).")

    # -- helpers -----------------------------------------------------------------------------------

    def _existing(self, path: str, action: str) -> Path:
        real = self.root.resolve(path, tool=f"{self.name}__{action}")
        if not real.exists():
            raise ToolError(f"{path!r} does not exist under the root; use {self.name}__list or "
                            f"{self.name}__glob to find the right path.")
        return real

    def _text_file(self, path: str, action: str) -> Path:
        real = self._existing(path, action)
        if real.is_dir():
            raise ToolError(f"{path!r} is a directory; list it with {self.name}__list.")
        if not real.is_file():  # a FIFO or device would block the read forever
            raise ToolError(f"{path!r} is not a regular file (a pipe, socket or device); "
                            f"{self.name}__{action} works on regular files only.")
        if is_binary(read_head(real)):
            raise ToolError(f"{path!r} is a binary file ({real.stat().st_size} bytes); "
                            f"{self.name}__{action} works on text files only.")
        return real


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
    numbers, start = [], 0
    while len(numbers) < show and (index := text.find(needle, start)) != -1:
        numbers.append(str(text.count("\n", 0, index) + 1))
        start = index + 1
    return ", ".join(numbers) + (", ..." if text.count(needle) > show else "")


def _replace_file(real: Path, data: bytes, shown: str) -> None:
    """Write ``data`` to a temporary file next to ``real``, then rename it over ``real``.

    The rename is atomic: a reader sees the old or the new content, never half; and if a symlink
    was swapped in at ``real`` after the check, the rename replaces the link, not its target.
    """
    mode = stat.S_IMODE(real.stat().st_mode) if real.exists() else None
    tmp = real.with_name(f".{real.name}.{secrets.token_hex(4)}.tmp")
    try:
        # 0o666 goes through the umask like any new file; O_EXCL|O_NOFOLLOW: never reuse a path
        # that someone else put there.
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
        fd = os.open(tmp, flags, 0o666)
    except OSError as exc:
        raise ToolError(f"Cannot write {shown!r}: {exc.strerror}.") from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        if mode is not None:
            os.chmod(tmp, mode)  # keep an existing file's permissions (an executable script)
        os.replace(tmp, real)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise ToolError(f"Cannot write {shown!r}: {exc.strerror}.") from None
