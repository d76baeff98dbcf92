"""Capability.files stays inside its root while another process swaps directories for symlinks.

A helper process keeps replacing a directory inside the root (and a file inside it) with a
symbolic link to an outside directory that holds a secret, as fast as it can, while the tools
read, list, glob, search, write and edit through that directory. A check-then-open design
(resolve the path, then open it by name) leaks: the swap lands between the check and the open.
Every access must walk the path from a descriptor of the root instead, so that no symlink is
ever followed by the kernel; the counts below must be exactly zero.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from loom_nb import Capability
from loom_nb.errors import ToolError

SECRET = "TOP-SECRET-OUTSIDE"

# Exchanges root/box (a real directory) and root/box/note.txt (a real file) with symlinks to the
# outside, back and forth, until its stdin closes. renameat2(RENAME_EXCHANGE) swaps two names in
# one step, so at every moment both exist: either as the real thing or as a link that leads out.
_SWAPPER = textwrap.dedent("""
    import ctypes, os, sys, threading
    root, outside = sys.argv[1], sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    def exchange(a, b):
        if libc.renameat2(-100, a.encode(), -100, b.encode(), 2) != 0:  # AT_FDCWD, EXCHANGE
            raise OSError(ctypes.get_errno(), f"renameat2 {a} {b}")
    box, link = os.path.join(root, "box"), os.path.join(root, "box.link")
    note, note_link = os.path.join(box, "note.txt"), os.path.join(box, "note.link")
    os.symlink(outside, link)
    os.symlink(os.path.join(outside, "note.txt"), note_link)
    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    while not stop.is_set():
        for _ in range(200):
            exchange(box, link)  # box is now a link to the outside
            exchange(box, link)  # and the real directory again
            exchange(note, note_link)  # the file itself is a link out
            exchange(note, note_link)
""")

pytestmark = pytest.mark.skipif(not hasattr(os, "O_NOFOLLOW") or sys.platform != "linux",
                                reason="the swapper uses Linux's renameat2(RENAME_EXCHANGE)")


class _Swapper:
    """The helper process; ``stop()`` ends it (and checks that it ran without an error)."""

    def __init__(self, root: Path, outside: Path) -> None:
        self.root, self.outside = root, outside
        self.process = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(root), str(outside)],
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == "ready"

    def stop(self) -> None:
        if self.process.returncode is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(timeout=10)
        assert self.process.returncode == 0, "the swapper failed, so the test proved nothing"


@pytest.fixture
def swapping(tmp_path: Path) -> Iterator[_Swapper]:
    """A process swapping root/box (and root/box/note.txt) for links to outside."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "box").mkdir(parents=True)
    (root / "box" / "note.txt").write_text("public note\n")
    outside.mkdir()
    (outside / "note.txt").write_text(f"{SECRET} note\n")
    (outside / "data.txt").write_text(f"{SECRET} data\n")
    swapper = _Swapper(root, outside)
    try:
        yield swapper
    finally:
        swapper.stop()


def _tools(root: Path, **options: object) -> dict[str, Callable[..., str]]:
    cap = Capability.files(str(root), read_only=False, **options)
    return {t.name.removeprefix("files__"): t for t in cap.toolset}


def _attempts(call: Callable[[], str], times: int) -> tuple[int, int]:
    """(answers that show the secret, answers that worked): refusals are fine, leaks are not."""
    leaks = worked = 0
    for _ in range(times):
        try:
            answer = call()
        except (ToolError, OSError):
            continue  # a refusal, or a name missing for an instant: nothing was shown
        worked += 1
        leaks += SECRET in answer
    return leaks, worked


def test_reads_never_leak_while_a_directory_is_swapped_for_a_link(swapping) -> None:
    tools = _tools(swapping.root)
    leaks, worked = _attempts(lambda: tools["read"](path="box/note.txt"), 6000)
    assert leaks == 0, f"{leaks} reads showed a file outside the root"
    assert worked > 0, "no read ever succeeded: the swap rate left nothing to check"


def test_list_glob_and_search_never_leak(swapping) -> None:
    tools = _tools(swapping.root)
    # list and glob show names: a leak there is the outside directory's 'data.txt'; search shows
    # contents: a leak is the secret.
    for name, call, needle in (
            ("list", lambda: tools["list"](path="box"), "data.txt"),
            ("glob", lambda: tools["glob"](pattern="box/*"), "data.txt"),
            ("search", lambda: tools["search"](pattern="SECRET", path="box"), SECRET),
            ("search", lambda: tools["search"](pattern="SECRET|note", regex=True), SECRET)):
        hits, worked = _count(call, needle, 700)
        assert hits == 0, f"files__{name} showed what is outside the root {hits} times"
        assert worked > 0, f"files__{name} never answered: nothing was checked"


def _count(call: Callable[[], str], needle: str, times: int) -> tuple[int, int]:
    """(answers holding needle, answers at all) over ``times`` calls."""
    hits = worked = 0
    for _ in range(times):
        try:
            answer = call()
        except (ToolError, OSError):
            continue  # a refusal, or a name missing for an instant
        worked += 1
        hits += needle in answer
    return hits, worked


def test_writes_and_edits_never_land_outside(swapping) -> None:
    root, outside = swapping.root, swapping.outside
    tools = _tools(root)
    before = {p.name: p.read_text() for p in outside.iterdir()}
    for i in range(1500):
        for call in (lambda: tools["write"](path=f"box/new{i}.txt", content="written"),
                     lambda: tools["write"](path="box/note.txt", content=f"public {i}\n",
                                            overwrite=True),
                     lambda: tools["edit"](path="box/note.txt", old_string=f"public {i}",
                                           new_string=f"edited {i}")):
            try:
                call()
            except (ToolError, OSError):
                pass
    swapping.stop()  # what is where, checked at rest
    after = {p.name: p.read_text() for p in outside.iterdir()}
    landed = [p for p in (root / "box").iterdir() if p.name.startswith("new")]
    assert landed, "no write ever succeeded: nothing was checked"
    assert after == before, (f"{len(set(after) - set(before))} files were created outside the "
                             f"root and {sum(after.get(k) != v for k, v in before.items())} "
                             f"changed")
    assert not [p for p in (root / "box").iterdir() if p.name.endswith(".tmp")]


def test_the_swaps_really_happen(swapping) -> None:
    # Guards the tests above: the swapper must make box a link for part of the time.
    root = swapping.root
    seen = {os.path.islink(root / "box") for _ in range(20000)}
    deadline = time.monotonic() + 5
    while seen != {True, False} and time.monotonic() < deadline:
        seen.add(os.path.islink(root / "box"))
    assert seen == {True, False}


# -- hard links and links inside the root ----------------------------------------------------------


def test_hard_links_to_outside_files_are_not_read(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text(f"{SECRET}\n")
    os.link(outside / "secret.txt", root / "alias.txt")  # same inode, a name inside the root
    tools = _tools(root)
    for call in (lambda: tools["read"](path="alias.txt"),
                 lambda: tools["edit"](path="alias.txt", old_string=SECRET, new_string="x")):
        with pytest.raises(ToolError, match="has 2 hard links") as refused:
            call()
        assert "allow_hardlinks=True" in str(refused.value)
    searched = tools["search"](pattern=SECRET)
    assert searched.startswith("No matches") and "1 files skipped: they have several hard" \
        " links" in searched
    assert (outside / "secret.txt").read_text() == f"{SECRET}\n"
    # the person may opt in (a repository that uses hard links on purpose)
    allowed = _tools(root, allow_hardlinks=True)
    assert allowed["read"](path="alias.txt") == f"{SECRET}\n"
    assert allowed["search"](pattern=SECRET) == f"alias.txt:1: {SECRET}"


def test_links_that_stay_inside_keep_working_and_dotdot_cannot_climb_out(tmp_path: Path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text(SECRET)
    (root / "a" / "b" / "file.txt").write_text("inside\n")
    (root / "up").symlink_to("a/b/..")  # relative, stays inside
    (root / "a" / "b" / "top").symlink_to("../..")  # the root itself
    (root / "a" / "sneaky").symlink_to("b/../../../outside")  # climbs out lexically
    (root / "loop").symlink_to("loop")
    tools = _tools(root)
    assert tools["read"](path="up/b/file.txt") == "inside\n"
    assert tools["read"](path="a/b/top/a/b/file.txt") == "inside\n"
    listing = tools["list"](path="a")
    assert "sneaky (symbolic link leading outside the root; cannot be used)" in listing
    for path in ("a/sneaky/secret.txt", "a/b/top/../outside/secret.txt"):
        with pytest.raises(ToolError, match="is outside the allowed root"):
            tools["read"](path=path)
    with pytest.raises(ToolError, match="more than 40 symbolic links"):
        tools["read"](path="loop")
    assert tools["write"](path="up/new.txt", content="n") == "Created a/new.txt: 1 bytes, 1 lines."
    # a write through a missing directory that climbs out creates nothing on the way
    with pytest.raises(ToolError, match="is outside the allowed root"):
        tools["write"](path="x/y/../../../outside/z.txt", content="no")
    assert not (root / "x").exists() and sorted(os.listdir(outside)) == ["secret.txt"]
