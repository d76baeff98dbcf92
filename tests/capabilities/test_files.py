"""Capability.files on real files: reading, searching, writing, and confinement to the root."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from loom_nb import Agent, Capability, ConfigError, Model
from loom_nb.runtime import GovernancePolicy

from .conftest import run_calls


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """root/ with a few files, and a sibling 'outside/' the root must never reach."""
    root = tmp_path / "root"
    (root / "src" / "pkg").mkdir(parents=True)
    (root / "src" / "app.py").write_text("import os\n\ndef main():\n    return 'hello'\n")
    (root / "src" / "pkg" / "util.py").write_text("def helper():\n    return 'Hello again'\n")
    (root / "notes.txt").write_text("alpha\nbeta\ngamma\n")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    (root / ".git").mkdir()
    (root / ".git" / "config").write_text("hello from git internals\n")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET hello\n")
    return root


def invoke(cap: Capability, name: str, **args):  # direct Tool.invoke, without an agent
    import asyncio

    tool = {t.name: t for t in cap.toolset}[name]
    return asyncio.run(tool.invoke(args))


# -- the capability itself -------------------------------------------------------------------------


def test_tools_flags_and_instructions(tree: Path) -> None:
    ro = Capability.files(str(tree))
    assert ro.kind == "files" and ro.name == "files"
    assert [t.name for t in ro.toolset] == ["files__list", "files__read", "files__glob",
                                            "files__search"]
    assert all(t.read_only and not t.destructive and not t.requires_approval for t in ro.toolset)
    assert str(tree.resolve()) in ro.instructions and "files__read" in ro.instructions
    assert "files__write" not in ro.instructions

    rw = Capability.files(str(tree), read_only=False, name="repo")
    tools = {t.name: t for t in rw.toolset}
    assert list(tools) == ["repo__list", "repo__read", "repo__glob", "repo__search",
                           "repo__write", "repo__edit"]
    for name in ("repo__write", "repo__edit"):
        assert not tools[name].read_only and not tools[name].destructive
    assert "repo__edit" in rw.instructions
    assert tools["repo__read"].parameters["required"] == ["path"]


def test_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist. Create the directory"):
        Capability.files(str(tmp_path / "nope"))
    (tmp_path / "f").write_text("x")
    with pytest.raises(ConfigError, match="is a file; pass a directory"):
        Capability.files(str(tmp_path / "f"))
    with pytest.raises(ConfigError, match="unknown options"):
        Capability.files(str(tmp_path), max_bytes=3)
    with pytest.raises(ConfigError, match="positive int"):
        Capability.files(str(tmp_path), max_read_bytes=0)


def test_loading_loom_nb_does_not_load_the_capability_modules() -> None:
    code = ("import sys, loom_nb; names = ['files', 'web', 'shell', '_net', '_paths'];"
            "print([n for n in names if 'loom_nb.capability.' + n in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- reading ---------------------------------------------------------------------------------------


def test_list_read_glob_search_through_an_agent(tree: Path) -> None:
    result = run_calls(Capability.files(str(tree)),
                       ("files__list", {}),
                       ("files__read", {"path": "notes.txt"}),
                       ("files__glob", {"pattern": "**/*.py"}),
                       ("files__search", {"pattern": "hello", "ignore_case": True}))
    assert result.status == "completed"
    listing, read, glob, search = (c.content for c in result.tool_calls)
    assert listing.splitlines() == ["./ (4 entries)", ".git/", "logo.png  (16 bytes)",
                                    "notes.txt  (17 bytes)", "src/"]
    assert read == "alpha\nbeta\ngamma\n"
    assert glob.splitlines() == ["src/app.py", "src/pkg/util.py"]
    # .git is skipped, the file outside the root is never seen
    assert search.splitlines() == ["src/app.py:4: return 'hello'",
                                   "src/pkg/util.py:2: return 'Hello again'"]
    assert not any(c.is_error for c in result.tool_calls)


def test_read_line_ranges_and_markers(tree: Path) -> None:
    (tree / "long.txt").write_text("".join(f"line {i}\n" for i in range(1, 101)))
    cap = Capability.files(str(tree))
    part = invoke(cap, "files__read", path="long.txt", offset=10, limit=3)
    assert part.content == ("line 10\nline 11\nline 12\n\n[lines 10-12 shown; the file continues: "
                            "call files__read with offset=13 to read on.]")
    tail = invoke(cap, "files__read", path="long.txt", offset=99)
    assert tail.content == "line 99\nline 100\n"
    beyond = invoke(cap, "files__read", path="long.txt", offset=500)
    assert beyond.is_error and "has only 100 lines" in beyond.content
    bad = invoke(cap, "files__read", path="long.txt", offset=0)
    assert bad.is_error and "starting at 1" in bad.content
    (tree / "empty.txt").write_text("")
    assert invoke(cap, "files__read", path="empty.txt").content == "(the file is empty)"


def test_read_size_limit_truncates_with_a_way_to_read_on(tree: Path) -> None:
    (tree / "big.txt").write_text("".join(f"{i:04d} {'x' * 94}\n" for i in range(1, 1001)))
    cap = Capability.files(str(tree), max_read_bytes=1000)  # 10 lines of 100 bytes
    first = invoke(cap, "files__read", path="big.txt")
    assert first.content.startswith("0001 ") and "0010 " in first.content
    assert "0011 " not in first.content
    assert first.content.endswith("[truncated at the read limit of 1000 bytes: lines 1-10 shown "
                                  "of a 100000-byte file; call files__read with offset=11 to read "
                                  "on (a smaller limit keeps each answer short).]")
    again = invoke(cap, "files__read", path="big.txt", offset=11)
    assert again.content.startswith("0011 ")

    (tree / "oneline.txt").write_text("y" * 50_000)
    huge = invoke(cap, "files__read", path="oneline.txt")
    assert huge.content.startswith("y" * 1000 + "\n[truncated: line 1 alone is longer")
    assert "y" * 1001 not in huge.content


def test_binary_directories_and_missing_files_are_refused(tree: Path) -> None:
    result = run_calls(Capability.files(str(tree)),
                       ("files__read", {"path": "logo.png"}),
                       ("files__read", {"path": "src"}),
                       ("files__read", {"path": "nope.txt"}),
                       ("files__list", {"path": "notes.txt"}))
    png, folder, missing, not_dir = result.tool_calls
    assert png.is_error and png.content == ("'logo.png' is a binary file (16 bytes); files__read "
                                            "works on text files only.")
    assert folder.is_error and "is a directory; list it with files__list" in folder.content
    assert missing.is_error and "does not exist under the root; use files__list" in missing.content
    assert not_dir.is_error and "read it with files__read" in not_dir.content
    os.mkfifo(tree / "pipe")  # reading a FIFO would block forever: refused instead
    fifo = invoke(Capability.files(str(tree)), "files__read", path="pipe")
    assert fifo.is_error and "is not a regular file" in fifo.content


def test_glob_options_and_refusals(tree: Path) -> None:
    cap = Capability.files(str(tree), max_results=1)
    capped = invoke(cap, "files__glob", pattern="**/*.py")
    assert capped.content.splitlines()[1] == ("[stopped after 1 paths; use a narrower pattern to "
                                              "see the rest]")
    cap = Capability.files(str(tree))
    assert invoke(cap, "files__glob", pattern="*.py", path="src").content == "src/app.py"
    assert invoke(cap, "files__glob", pattern="*.rs").content == "No paths match '*.rs' under '.'."
    for pattern in ("../outside/*", "/etc/*", "src/../../outside/*"):
        refused = invoke(cap, "files__glob", pattern=pattern)
        assert refused.is_error and "must be relative and must not contain '..'" in refused.content


def test_search_options(tree: Path) -> None:
    cap = Capability.files(str(tree), max_results=2)
    regex = invoke(cap, "files__search", pattern=r"def \w+\(", regex=True)
    assert regex.content.splitlines() == ["src/app.py:3: def main():",
                                          "src/pkg/util.py:1: def helper():"]
    only_txt = invoke(cap, "files__search", pattern="a", include="*.txt")
    assert only_txt.content.splitlines() == ["notes.txt:1: alpha", "notes.txt:2: beta",
                                             "[stopped after 2 matches; use path=, include= or a "
                                             "more specific pattern to see the rest]"]
    py_only = invoke(cap, "files__search", pattern="import", include="*.py")
    assert py_only.content == "src/app.py:1: import os"
    capped = invoke(cap, "files__search", pattern="e")
    assert len(capped.content.splitlines()) == 3 and "stopped after 2 matches" in capped.content
    one_file = invoke(cap, "files__search", pattern="gamma", path="notes.txt")
    assert one_file.content == "notes.txt:3: gamma"
    case = invoke(cap, "files__search", pattern="HELLO")
    assert case.content == "No matches for 'HELLO' under '.'."
    bad = invoke(cap, "files__search", pattern="(unclosed", regex=True)
    assert bad.is_error and "not a valid regular expression" in bad.content
    literal = invoke(cap, "files__search", pattern="main()")  # regex characters taken literally
    assert literal.content == "src/app.py:3: def main():"
    inside_git = invoke(cap, "files__search", pattern="hello", path=".git")
    assert inside_git.content == ".git/config:1: hello from git internals"


# -- writing ---------------------------------------------------------------------------------------


def test_write_creates_and_refuses_to_clobber(tree: Path) -> None:
    cap = Capability.files(str(tree), read_only=False)
    result = run_calls(cap,
                       ("files__write", {"path": "new/deep/file.md", "content": "# Title\nbody"}),
                       ("files__write", {"path": "notes.txt", "content": "gone"}),
                       ("files__write", {"path": "src", "content": "x"}))
    created, clobber, folder = result.tool_calls
    assert created.content == "Created new/deep/file.md: 12 bytes, 2 lines."
    assert (tree / "new" / "deep" / "file.md").read_text() == "# Title\nbody"
    assert clobber.is_error and "already exists and was not changed" in clobber.content
    assert "overwrite=true" in clobber.content
    assert (tree / "notes.txt").read_text() == "alpha\nbeta\ngamma\n"
    assert folder.is_error and "is a directory" in folder.content

    script = tree / "run.sh"
    script.write_text("echo old\n")
    script.chmod(0o755)
    done = invoke(cap, "files__write", path="run.sh", content="echo new\n", overwrite=True)
    assert done.content == "Replaced run.sh: 9 bytes, 1 lines."
    assert script.read_text() == "echo new\n"
    assert stat.S_IMODE(script.stat().st_mode) == 0o755  # permissions kept
    assert not [p for p in tree.iterdir() if p.name.endswith(".tmp")]  # no temp file left


def test_edit_exact_string_replace(tree: Path) -> None:
    cap = Capability.files(str(tree), read_only=False)
    (tree / "dup.txt").write_text("x = 1\ny = 2\nx = 1\n")
    result = run_calls(cap,
                       ("files__edit", {"path": "src/app.py", "old_string": "return 'hello'",
                                        "new_string": "return 'bye'"}),
                       ("files__edit", {"path": "dup.txt", "old_string": "x = 1",
                                        "new_string": "x = 3"}),
                       ("files__edit", {"path": "notes.txt", "old_string": "delta",
                                        "new_string": "epsilon"}),
                       ("files__edit", {"path": "dup.txt", "old_string": "x = 1",
                                        "new_string": "x = 3", "replace_all": True}))
    unique, ambiguous, missing, all_of_them = result.tool_calls
    assert unique.content == "Edited src/app.py: replaced 1 occurrence (first at line 4)."
    assert (tree / "src" / "app.py").read_text().endswith("return 'bye'\n")
    assert ambiguous.is_error and ambiguous.content == (
        "old_string occurs 2 times in 'dup.txt' (lines 1, 3); nothing was changed. Include more "
        "surrounding text so that it occurs exactly once, or pass replace_all=true to replace all.")
    assert missing.is_error
    assert "was not found in 'notes.txt'; nothing was changed" in missing.content
    assert all_of_them.content == "Edited dup.txt: replaced 2 occurrences (first at line 1)."
    assert (tree / "dup.txt").read_text() == "x = 3\ny = 2\nx = 3\n"


def test_edit_edge_cases(tree: Path) -> None:
    cap = Capability.files(str(tree), read_only=False)
    (tree / "win.txt").write_bytes(b"one\r\ntwo\r\nthree\r\n")
    crlf = invoke(cap, "files__edit", path="win.txt", old_string="one\ntwo", new_string="1\n2")
    assert not crlf.is_error
    assert (tree / "win.txt").read_bytes() == b"1\r\n2\r\nthree\r\n"
    (tree / "latin.txt").write_bytes("café\n".encode("latin-1"))
    latin = invoke(cap, "files__edit", path="latin.txt", old_string="caf", new_string="tea")
    assert latin.is_error and "is not UTF-8 text" in latin.content
    assert (tree / "latin.txt").read_bytes() == "café\n".encode("latin-1")
    empty = invoke(cap, "files__edit", path="notes.txt", old_string="", new_string="x")
    assert empty.is_error and "old_string is empty" in empty.content
    png = invoke(cap, "files__edit", path="logo.png", old_string="PNG", new_string="GIF")
    assert png.is_error and "binary file" in png.content


# -- confinement -----------------------------------------------------------------------------------


def test_path_traversal_is_refused_and_nothing_is_written(tree: Path) -> None:
    cap = Capability.files(str(tree), read_only=False)
    outside = tree.parent / "outside"
    escape = str(outside / "secret.txt")
    result = run_calls(cap,
                       ("files__read", {"path": "../outside/secret.txt"}),
                       ("files__read", {"path": escape}),
                       ("files__read", {"path": "src/../../outside/secret.txt"}),
                       ("files__list", {"path": ".."}),
                       ("files__search", {"pattern": "SECRET", "path": "../outside"}),
                       ("files__write", {"path": "../outside/new.txt", "content": "pwned"}),
                       ("files__write", {"path": str(outside / "abs.txt"), "content": "pwned"}),
                       ("files__edit", {"path": "../outside/secret.txt", "old_string": "TOP",
                                        "new_string": "NO"}))
    assert result.status == "completed"
    for call in result.tool_calls:
        assert call.is_error, call
        assert "is outside the allowed root" in call.content
        assert "Only paths inside the root can be used" in call.content
        assert "SECRET" not in call.content
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOP SECRET hello\n"
    # the model got the refusals as tool results and went on
    assert result.output == "done"


def test_absolute_paths_inside_the_root_work(tree: Path) -> None:
    cap = Capability.files(str(tree))
    inside = invoke(cap, "files__read", path=str(tree / "notes.txt"))
    assert inside.content == "alpha\nbeta\ngamma\n"


def test_symlinks_that_lead_out_are_refused(tree: Path) -> None:
    outside = tree.parent / "outside"
    (tree / "link.txt").symlink_to(outside / "secret.txt")
    (tree / "linkdir").symlink_to(outside, target_is_directory=True)
    (tree / "dangling").symlink_to(outside / "not-yet.txt")
    (tree / "inner").symlink_to(tree / "notes.txt")  # a link that stays inside is fine
    cap = Capability.files(str(tree), read_only=False)
    result = run_calls(cap,
                       ("files__read", {"path": "link.txt"}),
                       ("files__read", {"path": "linkdir/secret.txt"}),
                       ("files__write", {"path": "link.txt", "content": "pwned",
                                         "overwrite": True}),
                       ("files__write", {"path": "linkdir/new.txt", "content": "pwned"}),
                       ("files__write", {"path": "dangling", "content": "pwned"}),
                       ("files__edit", {"path": "link.txt", "old_string": "TOP",
                                        "new_string": "NO"}),
                       ("files__list", {"path": "linkdir"}),
                       ("files__read", {"path": "inner"}))
    *refused, inner = result.tool_calls
    for call in refused:
        assert call.is_error and "is outside the allowed root" in call.content, call
        assert "a symbolic link leads to" in call.content
    assert inner.content == "alpha\nbeta\ngamma\n"
    assert sorted(p.name for p in outside.iterdir()) == ["secret.txt"]
    assert (outside / "secret.txt").read_text() == "TOP SECRET hello\n"
    assert (tree / "link.txt").is_symlink()


def test_symlinks_out_are_invisible_to_listing_glob_and_search(tree: Path) -> None:
    outside = tree.parent / "outside"
    (tree / "link.txt").symlink_to(outside / "secret.txt")
    (tree / "linkdir").symlink_to(outside, target_is_directory=True)
    cap = Capability.files(str(tree))
    listing = invoke(cap, "files__list").content
    assert "link.txt (symbolic link leading outside the root; cannot be used)" in listing
    assert "linkdir (symbolic link leading outside the root; cannot be used)" in listing
    globbed = invoke(cap, "files__glob", pattern="link*/*").content
    assert "secret" not in globbed and "symbolic links leading outside the root" in globbed
    files = invoke(cap, "files__glob", pattern="*.txt").content
    assert files.splitlines()[0] == "notes.txt" and "link.txt" not in files
    assert invoke(cap, "files__search", pattern="TOP SECRET").content == (
        "No matches for 'TOP SECRET' under '.'.")


def test_a_root_given_through_a_symlink(tree: Path) -> None:
    alias = tree.parent / "alias"
    alias.symlink_to(tree, target_is_directory=True)
    cap = Capability.files(str(alias), read_only=False)
    assert invoke(cap, "files__read", path=str(alias / "notes.txt")).content.startswith("alpha")
    assert invoke(cap, "files__write", path="x.txt", content="ok").content.startswith("Created")
    assert (tree / "x.txt").read_text() == "ok"


# -- writes under read-only ------------------------------------------------------------------------


def test_read_only_capability_has_no_write_tools(tree: Path) -> None:
    result = run_calls(Capability.files(str(tree)),
                       ("files__write", {"path": "x.txt", "content": "no"}),
                       ("files__edit", {"path": "notes.txt", "old_string": "alpha",
                                        "new_string": "omega"}))
    assert result.status == "completed" and len(result.tool_calls) == 2
    for call in result.tool_calls:
        assert call.is_error and call.content.startswith("There is no tool named")
        assert "files__read" in call.content  # the message lists what exists
    assert not (tree / "x.txt").exists()
    assert (tree / "notes.txt").read_text().startswith("alpha")


def test_governance_read_only_mode_denies_write_and_edit(tree: Path) -> None:
    result = run_calls(Capability.files(str(tree), read_only=False),
                       ("files__write", {"path": "x.txt", "content": "no"}),
                       ("files__edit", {"path": "notes.txt", "old_string": "alpha",
                                        "new_string": "omega"}),
                       ("files__read", {"path": "notes.txt"}),
                       governance=GovernancePolicy(read_only=True))
    write, edit, read = result.tool_calls
    assert write.is_error and write.content == ("Denied by the governance policy: Read-only mode: "
                                                "tool 'files__write' may change things.")
    assert edit.is_error and "Read-only mode" in edit.content
    assert read.content == "alpha\nbeta\ngamma\n"
    assert not (tree / "x.txt").exists()
    decisions = [e.data for e in result.events if e.type == "governance.decision"]
    assert [(d["name"], d["action"], d["check"]) for d in decisions] == [
        ("files__write", "deny", "read_only"), ("files__edit", "deny", "read_only"),
        ("files__read", "allow", "default")]


def test_approve_writes_pauses_until_a_person_approves(tree: Path) -> None:
    cap = Capability.files(str(tree), read_only=False, approve_writes=True)
    model = Model.scripted([{"tool": "files__write", "args": {"path": "a.txt", "content": "A"}},
                            "written"])
    paused = Agent(model, capabilities=[cap]).run_sync("write it")
    assert paused.status == "needs_approval" and not (tree / "a.txt").exists()
    done = paused.approve().resume_sync()
    assert done.status == "completed" and (tree / "a.txt").read_text() == "A"


def test_write_keeps_a_symlink_swapped_in_from_being_followed(tree: Path) -> None:
    # The write lands by renaming a temp file over the name in the checked directory; if that
    # name were a symlink at that moment, the link would be replaced, never its target.
    from loom_nb.capability.files import _replace_file

    outside = tree.parent / "outside" / "secret.txt"
    target = tree / "swap.txt"
    target.symlink_to(outside)
    parent = os.open(tree, os.O_RDONLY | os.O_DIRECTORY)
    try:
        _replace_file(parent, "swap.txt", b"new", "swap.txt", None)
    finally:
        os.close(parent)
    assert not target.is_symlink() and target.read_text() == "new"
    assert outside.read_text() == "TOP SECRET hello\n"
    assert os.listdir(tree.parent / "outside") == ["secret.txt"]
