"""Paths confined to a root directory, opened without the kernel ever following a link.

Resolving a path (``realpath``) and then opening it by name is a check-then-use race: another
process can swap a directory for a symbolic link in between, and the open follows the link out of
the root. So nothing here opens a path by name. Every access starts from a descriptor of the root
and walks one component at a time with ``os.open(part, O_NOFOLLOW | O_DIRECTORY, dir_fd=parent)``;
the final entry is opened with ``O_NOFOLLOW`` relative to its parent's descriptor, and the tools
read, list, create and rename through those descriptors only.

Symbolic links *inside* the root keep working: a link met on the way is read (``readlink`` on the
parent's descriptor) and its target is walked the same way, component by component, so a link
leads only where a path the model typed could lead. A target outside the root is refused. ``..``
climbs the stack of open directories, never the file system, so it cannot leave the root either.

Trusted: the root itself and the directories above it (the person chose the root). Not covered: a
directory that someone *moves* out of the root while a tool is working inside it (the descriptor
follows the directory). POSIX only (``dir_fd`` and ``O_NOFOLLOW``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections import deque
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError, ToolError

__all__ = ["DIR_FLAGS", "FILE_FLAGS", "Missing", "Outside", "Place", "Root", "is_binary",
           "read_head"]

# The first bytes of a file decide whether it is text: a NUL byte there means binary for every
# text encoding the model could read (UTF-16 aside, which models cannot use through this tool).
_SNIFF_BYTES = 8192
_MAX_LINKS = 40  # links followed in one path, as the kernel allows (a loop ends here)
_RETRIES = 5  # an entry that changes kind between its stat and its open is looked up again
DIR_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_NOFOLLOW", 0) \
    | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO that was swapped in after the check must not wait for a writer.
FILE_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_NONBLOCK | os.O_CLOEXEC


class Outside(ToolError):
    """A path that leads out of the root (through '..', an absolute path or a link)."""


class Missing(ToolError):
    """A path, or a directory on its way, that does not exist."""


class _Changed(Exception):
    """The entry changed kind between its stat and its open (a swap in progress): look again."""


class Place:
    """Where a path led: the open directories from the root down, and the final entry's name.

    ``name`` is None when the path names a directory on the stack itself (the root, or a path
    ending in '..'). ``stat`` is the final entry's lstat (None: it does not exist); links on the
    way have been followed already, so the final entry is never a link when it was looked at.
    Close it (or use ``with``) to release the descriptors.
    """

    def __init__(self, root_fd: int) -> None:
        self.dirs: list[int] = [root_fd]
        self.names: list[str] = []
        self.name: str | None = None
        self.stat: os.stat_result | None = None
        self.fd: int | None = None  # the final entry once opened

    def __enter__(self) -> Place:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()

    @property
    def parent(self) -> int:
        return self.dirs[-1]

    @property
    def parts(self) -> list[str]:
        return [*self.names, self.name] if self.name is not None else list(self.names)

    @property
    def display(self) -> str:
        """The path as the model should write it: relative to the root, with '/'."""
        return "/".join(self.parts) or "."

    @property
    def is_dir(self) -> bool:
        return self.stat is not None and stat.S_ISDIR(self.stat.st_mode)

    def child(self, name: str) -> str:
        """The root-relative path of an entry inside this directory."""
        return "/".join([*self.parts, name])

    def open_dir(self) -> int:
        """A descriptor of this directory (owned by the place)."""
        if self.name is None:
            return self.parent
        if self.fd is None:
            self.fd = _open_checked(self.name, DIR_FLAGS, self.parent, stat.S_ISDIR)
        return self.fd

    def open_file(self) -> tuple[int, os.stat_result]:
        """A read descriptor of the final entry (owned by the place) and its fstat."""
        assert self.name is not None, "a directory on the stack is not a file"
        if self.fd is None:
            self.fd = _open_checked(self.name, FILE_FLAGS, self.parent, stat.S_ISREG)
        return self.fd, os.fstat(self.fd)

    def up(self) -> None:
        os.close(self.dirs.pop())
        self.names.pop()

    def to_root(self) -> None:
        while self.names:
            self.up()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        while self.dirs:
            os.close(self.dirs.pop())
        self.names.clear()


def _open_checked(name: str, flags: int, parent: int, kind: Callable[[int], bool]) -> int:
    try:
        fd = os.open(name, flags, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOENT, errno.ENOTDIR, errno.EMLINK):
            raise _Changed from None  # swapped for a link, removed, or no longer a directory
        raise
    if not kind(os.fstat(fd).st_mode):
        os.close(fd)
        raise _Changed
    return fd


class Root:
    """A directory that paths are confined to (see the module docstring)."""

    def __init__(self, root: str | os.PathLike[str], *, what: str, missing_hint: str = "") -> None:
        if not (hasattr(os, "O_NOFOLLOW") and hasattr(os, "O_DIRECTORY")
                and os.open in os.supports_dir_fd and os.scandir in os.supports_fd):
            raise ConfigError(f"{what} needs a POSIX system (Linux or macOS): its confinement "
                              f"opens every path relative to a directory descriptor.")
        given = Path(root).expanduser()
        if not given.exists():
            raise ConfigError(
                f"{what}: the root {str(given)!r} does not exist. Create the directory first or "
                f"pass an existing one (for example root='.')."
            )
        if not given.is_dir():
            raise ConfigError(f"{what}: the root {str(given)!r} is a file; pass a directory.")
        self.path = Path(os.path.realpath(given))
        # an absolute path the model copies from the root as the person wrote it works too
        self._prefixes = [_components(str(self.path)), _components(os.path.abspath(given))]
        self.missing_hint = missing_hint

    def __str__(self) -> str:
        return str(self.path)

    def entry(self, path: str, *, tool: str, create_dirs: bool = False) -> Place:
        """Walk ``path`` from the root's descriptor, following links inside the root safely.

        Raises Outside for a path that leads out, Missing when a directory on the way does not
        exist (unless ``create_dirs``: then it is created inside the root). A missing final
        entry is not an error: the place's ``stat`` is None.
        """
        parts = self._parts(path, tool)
        place = Place(self._open_root(tool))
        try:
            self._walk(place, deque(parts), path, tool, create_dirs)
        except BaseException:
            place.close()
            raise
        return place

    def open(self, path: str, *, tool: str, want: str) -> Place:
        """The place of an existing entry, opened: ``want`` is "dir", "file" or "any".

        Type errors are the caller's to word: an entry of another kind comes back unopened.
        """
        for _ in range(_RETRIES):
            place = self.entry(path, tool=tool)
            try:
                if place.stat is None:
                    raise Missing(f"{path!r} does not exist under the root{self.missing_hint}.")
                if place.is_dir and want in ("dir", "any"):
                    place.open_dir()
                elif stat.S_ISREG(place.stat.st_mode) and want in ("file", "any"):
                    place.open_file()
                return place
            except _Changed:
                place.close()  # a swap happened between the stat and the open: walk again
            except BaseException:
                place.close()
                raise
        raise ToolError(f"{path!r} kept changing while it was being opened (another process is "
                        f"replacing it); try again later.")

    # -- the walk ----------------------------------------------------------------------------------

    def _walk(self, place: Place, todo: deque[str], path: str, tool: str,
              create_dirs: bool) -> None:
        links, via = 0, None
        while todo:
            part = todo.popleft()
            if part == "..":
                if not place.names:
                    raise self._outside(path, tool, via)
                place.up()
                continue
            try:
                st: os.stat_result | None = os.stat(part, dir_fd=place.parent,
                                                    follow_symlinks=False)
            except FileNotFoundError:
                st = None
            if st is not None and stat.S_ISLNK(st.st_mode):
                links += 1
                if links > _MAX_LINKS:
                    raise ToolError(f"{tool}: {path!r} goes through more than {_MAX_LINKS} "
                                    f"symbolic links (a loop?); pass a path without them.")
                target = os.readlink(part, dir_fd=place.parent)
                via = os.path.normpath(os.path.join(self.path, *place.names, target))
                todo.extendleft(reversed(self._link_parts(target, place, path, tool, via)))
                continue
            if not todo:  # the final entry: looked at, not opened
                place.name, place.stat = part, st
                return
            if st is None and create_dirs and ".." in todo:
                # what follows a missing directory cannot hold links: fold its '..' by hand
                # before creating anything, so no directory is made for a path that leads out
                todo = deque(_lexical([part, *todo]))
                continue
            self._descend(place, part, st, path, tool, create_dirs)
        place.stat = os.fstat(place.parent)  # the path named a directory on the stack

    def _descend(self, place: Place, part: str, st: os.stat_result | None, path: str, tool: str,
                 create_dirs: bool) -> None:
        if st is None:
            if not create_dirs:
                raise Missing(f"{path!r} does not exist under the root ({place.child(part)!r} "
                              f"is missing){self.missing_hint}.")
            try:
                os.mkdir(part, dir_fd=place.parent)
            except FileExistsError:
                pass
            except OSError as exc:
                raise ToolError(f"Cannot create the directory {place.child(part)!r}: "
                                f"{exc.strerror}.") from None
        elif not stat.S_ISDIR(st.st_mode):
            raise ToolError(f"{path!r}: {place.child(part)!r} is a file, not a directory.")
        try:
            fd = _open_checked(part, DIR_FLAGS, place.parent, stat.S_ISDIR)
        except _Changed:
            raise ToolError(f"{path!r}: {place.child(part)!r} changed while it was being "
                            f"opened (another process is replacing it); try again.") from None
        place.dirs.append(fd)
        place.names.append(part)

    def _link_parts(self, target: str, place: Place, path: str, tool: str,
                    via: str) -> list[str]:
        if not target.startswith("/"):
            return _components(target)
        for prefix in self._prefixes:
            if _components(target)[: len(prefix)] == prefix:
                place.to_root()
                return _components(target)[len(prefix):]
        raise self._outside(path, tool, via)

    def _parts(self, path: str, tool: str) -> list[str]:
        if "\x00" in path:
            raise ToolError(f"{tool}: the path contains a NUL byte; pass a plain path.")
        text = os.path.expanduser(path) if path.startswith("~") else path
        if not text.startswith("/"):
            return _components(text)
        for prefix in self._prefixes:
            if _components(text)[: len(prefix)] == prefix:
                return _components(text)[len(prefix):]
        raise self._outside(path, tool, None)

    def _open_root(self, tool: str) -> int:
        try:
            return os.open(self.path, DIR_FLAGS)
        except OSError as exc:
            raise ToolError(f"{tool}: the root {str(self.path)!r} cannot be opened "
                            f"({exc.strerror}); it was removed or replaced by a link. Restore it "
                            f"or create the capability again.") from None

    def _outside(self, path: str, tool: str, via: str | None) -> Outside:
        why = f" (a symbolic link leads to {via!r})" if via else ""
        return Outside(
            f"{tool}: {path!r} is outside the allowed root {str(self.path)!r}{why}. Only paths "
            f"inside the root can be used: pass a path relative to the root, without '..' "
            f"leading out of it.")


def _components(path: str) -> list[str]:
    return [p for p in path.split("/") if p not in ("", ".")]


def _lexical(parts: list[str]) -> list[str]:
    """'..' folded into the names before it; leading '..' stay (they climb real directories)."""
    out: list[str] = []
    for part in parts:
        if part == ".." and out and out[-1] != "..":
            out.pop()
        else:
            out.append(part)
    return out


def is_binary(head: bytes) -> bool:
    """Whether the first bytes of a file look binary (a NUL byte in the sniffed prefix)."""
    return b"\x00" in head[:_SNIFF_BYTES]


def read_head(fd: int) -> bytes:
    """The first bytes of an open file (without moving its offset)."""
    return os.pread(fd, _SNIFF_BYTES, 0)
