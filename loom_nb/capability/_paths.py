"""Paths confined to a root directory (for Capability.files).

Every path the model names goes through :meth:`Root.resolve` at every access: the path is joined to
the root, *all* symlinks are resolved (``os.path.realpath``), and the real path must lie inside the
real root. A path that does not exist yet (a file about to be written) is resolved through its
existing parents, so a symlinked parent directory that leads out is caught as well.

What this does not close: a race where another process swaps a directory for a symlink between the
check and the access. Writes go to a temporary file that is then renamed over the resolved path
(a rename replaces a symlink put there meanwhile instead of following it), so only the parents are
trusted for the microseconds in between. Confinement protects against the model (a
prompt-injected path), not against a hostile local user who can already write to the directory.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import ConfigError, ToolError

__all__ = ["Root", "is_binary", "read_head"]

# The first bytes of a file decide whether it is text: a NUL byte there means binary for every
# text encoding the model could read (UTF-16 aside, which models cannot use through this tool).
_SNIFF_BYTES = 8192


class Root:
    """A directory that paths are confined to; ``display`` names paths relative to it."""

    def __init__(self, root: str | os.PathLike[str], *, what: str) -> None:
        given = Path(root).expanduser()
        if not given.exists():
            raise ConfigError(
                f"{what}: the root {str(given)!r} does not exist. Create the directory first or "
                f"pass an existing one (for example root='.')."
            )
        if not given.is_dir():
            raise ConfigError(f"{what}: the root {str(given)!r} is a file; pass a directory.")
        self.path = Path(os.path.realpath(given))

    def __str__(self) -> str:
        return str(self.path)

    def contains(self, real: str | os.PathLike[str]) -> bool:
        """Whether an already resolved path lies inside the root (the root itself included)."""
        real = os.fspath(real)
        root = str(self.path)
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def resolve(self, path: str, *, tool: str) -> Path:
        """The real path of ``path`` (relative to the root, or absolute inside it), or ToolError."""
        if "\x00" in path:
            raise ToolError(f"{tool}: the path contains a NUL byte; pass a plain path.")
        candidate = Path(path).expanduser() if path.startswith("~") else Path(path)
        joined = candidate if candidate.is_absolute() else self.path / candidate
        # realpath resolves every symlink that exists, including a dangling one's target and the
        # existing parents of a path that does not exist yet; so a link that leads out is seen.
        real = Path(os.path.realpath(joined))
        if not self.contains(real):
            raise ToolError(
                f"{tool}: {path!r} is outside the allowed root {str(self.path)!r}"
                f"{_why_outside(joined, real)}. Only paths inside the root can be used: pass a "
                f"path relative to the root, without '..' leading out of it."
            )
        return real

    def display(self, real: str | os.PathLike[str]) -> str:
        """A resolved path as the model should write it: relative to the root, with '/'."""
        rel = os.path.relpath(real, self.path)
        return "." if rel == "." else Path(rel).as_posix()


def _why_outside(joined: Path, real: Path) -> str:
    if os.path.normpath(joined) != str(real):
        return f" (a symbolic link leads to {str(real)!r})"
    return ""


def is_binary(head: bytes) -> bool:
    """Whether the first bytes of a file look binary (a NUL byte in the sniffed prefix)."""
    return b"\x00" in head[:_SNIFF_BYTES]


def read_head(path: Path) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(_SNIFF_BYTES)
