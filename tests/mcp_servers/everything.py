"""The reference MCP server, ``@modelcontextprotocol/server-everything``, from the npm registry.

``python tests/mcp_servers/everything.py`` installs the pinned version into ``build/npm-everything``
(git-ignored); ``.ci/run`` does that up front, and the tests' session fixture does it when it is
missing, bounded in time. Over streamable HTTP the server is started with ``loopback.mjs``
preloaded, which binds it to 127.0.0.1 (the server itself listens on every interface).
"""

from __future__ import annotations

import fcntl
import json
import shutil
import subprocess
import sys
from pathlib import Path

#: The version the tests were written against (its tools, prompts and resources are checked).
VERSION = "2026.8.31"
PACKAGE = "@modelcontextprotocol/server-everything"
ROOT = Path(__file__).resolve().parents[2]
PREFIX = ROOT / "build" / "npm-everything"
PACKAGE_DIR = PREFIX / "node_modules" / "@modelcontextprotocol" / "server-everything"
ENTRY = PACKAGE_DIR / "dist" / "index.js"
LOOPBACK = Path(__file__).with_name("loopback.mjs")
INSTALL_SECONDS = 300


class NodeMissing(RuntimeError):
    """node or npm is not installed: the tests of the reference server skip."""


def installed_version() -> str | None:
    try:
        return str(json.loads((PACKAGE_DIR / "package.json").read_text())["version"])
    except (OSError, ValueError, KeyError):
        return None


def install(timeout: float = INSTALL_SECONDS) -> Path:
    """The server's entry point, installed from the npm registry first if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise NodeMissing("node and npm are needed to run the reference MCP server "
                          f"{PACKAGE} (install Node.js 18 or later)")
    PREFIX.mkdir(parents=True, exist_ok=True)
    with open(PREFIX / ".install-lock", "w") as lock:  # two test processes at once: one installs
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed_version() != VERSION or not ENTRY.exists():
            done = subprocess.run(
                [npm, "install", "--prefix", str(PREFIX), "--no-audit", "--no-fund",
                 "--loglevel=error", f"{PACKAGE}@{VERSION}"],
                capture_output=True, text=True, timeout=timeout, check=False)
            if done.returncode != 0 or installed_version() != VERSION:
                raise RuntimeError(f"npm could not install {PACKAGE}@{VERSION} into {PREFIX}:\n"
                                   f"{done.stderr[-2000:]}")
    return ENTRY


def stdio_command() -> list[str]:
    return [shutil.which("node") or "node", str(ENTRY), "stdio"]


def http_command() -> list[str]:
    return [shutil.which("node") or "node", "--import", LOOPBACK.as_uri(), str(ENTRY),
            "streamableHttp"]


if __name__ == "__main__":
    try:
        print(install())
    except NodeMissing as exc:
        print(f"skipped: {exc}", file=sys.stderr)
