"""No pattern the model chooses (search regex, ignore_case text, glob, include) stalls the process.

Python's ``re`` backtracks, and a tool thread cannot be stopped: ``(a+)+$`` on one long line
would hold the process for hours. The searches run in a child process here, so that the old
behaviour fails the test on its time limit instead of hanging the test run.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from loom_nb import Capability
from loom_nb.errors import ToolError

pytest.importorskip("re2", reason="the files extra (google-re2) is not installed")

# the classic catastrophic-backtracking patterns, each against a line built to defeat it
_CATASTROPHIC = ["(a+)+$", "(a|aa)+$", "(a|a?)+$", "(.*a){20}$", "^(([a-z])+.)+[A-Z]([a-z])+$",
                 "(x+x+)+y", r"(\w+\s?)+$"]

_CHILD = textwrap.dedent("""
    import asyncio, json, sys, time
    from loom_nb import Capability
    root, calls = sys.argv[1], json.loads(sys.argv[2])
    cap = Capability.files(root, max_results=1000)
    tools = {t.name: t for t in cap.toolset}
    out = []
    for name, args in calls:
        started = time.monotonic()
        outcome = asyncio.run(tools[name].invoke(args))
        out.append([outcome.is_error, outcome.content[:300], time.monotonic() - started])
    print(json.dumps(out))
""")


def _run_in_child(root: Path, calls: list[tuple[str, dict[str, object]]],
                  limit: float) -> list[tuple[bool, str, float]]:
    """Each call's (is_error, content start, seconds), or a failure if they take over ``limit``."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(root), json.dumps(calls)],
                              capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the calls were still running after {limit} s: a pattern stalled the "
                    f"process")
    assert done.returncode == 0, done.stderr
    return [tuple(row) for row in json.loads(done.stdout)]


def test_catastrophic_regexes_finish_in_linear_time(tmp_path: Path) -> None:
    (tmp_path / "long.txt").write_text("a" * 5000 + "!\n" + "x" * 5000 + "\n"
                                       + "Ab" * 2000 + "1\n" + "word " * 2000 + "!\n")
    (tmp_path / "hit.txt").write_text("aaaa\n")
    calls = [("files__search", {"pattern": p, "regex": True}) for p in _CATASTROPHIC]
    calls.append(("files__search", {"pattern": "(A+)+$", "regex": True, "ignore_case": True}))
    results = _run_in_child(tmp_path, calls, limit=20)
    for (is_error, content, seconds), (_, args) in zip(results, calls):
        assert not is_error, content
        assert seconds < 5, f"{args['pattern']!r} took {seconds:.1f} s"
    assert results[0][1] == "hit.txt:1: aaaa"  # the regex still finds what matches
    assert results[-1][1] == "hit.txt:1: aaaa"  # ignore_case through RE2 too


def test_ignore_case_text_search_is_linear(tmp_path: Path) -> None:
    # a case-insensitive regex built from an escaped literal is O(line * needle) in Python's re
    (tmp_path / "big.txt").write_text("a" * 9_000_000 + "\n")  # under the 10 MB search limit
    calls = [("files__search", {"pattern": "a" * 999 + "b", "ignore_case": True}),
             ("files__search", {"pattern": "A" * 999, "ignore_case": True})]
    (miss, miss_text, seconds), (hit, hit_text, _) = _run_in_child(tmp_path, calls, limit=30)
    assert seconds < 5, f"a text search of one 9 MB line took {seconds:.1f} s"
    assert not miss and miss_text.startswith("No matches")
    assert not hit and hit_text.startswith("big.txt:1: aaaa")


def test_many_double_stars_do_not_multiply_the_walk(tmp_path: Path) -> None:
    def tree(folder: Path, depth: int) -> None:
        for i in range(3):
            sub = folder / f"d{i}"
            sub.mkdir()
            (sub / "f.txt").write_text("x")
            if depth > 1:
                tree(sub, depth - 1)

    tree(tmp_path, 5)  # 363 directories, one file in each
    pattern = "/".join(["**"] * 12) + "/*.txt"
    calls = [("files__glob", {"pattern": pattern}), ("files__glob", {"pattern": "**/*.txt"}),
             ("files__search", {"pattern": "x", "include": "*" * 300 + "a"})]
    (err, many, _), (_, once, _), (_, include, _) = _run_in_child(tmp_path, calls, limit=15)
    assert not err and many == once and many.startswith("d0/d0/d0/d0/d0/f.txt")
    assert include.startswith("No matches")


def test_what_re2_cannot_do_is_an_error_that_says_what_it_can(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("abab\n")
    tools = {t.name: t for t in Capability.files(str(tmp_path)).toolset}
    for pattern in (r"(ab)\1", "a(?=b)", "(?<!x)a", "(unclosed"):
        with pytest.raises(ToolError, match="is not a valid regular expression for RE2") as err:
            tools["files__search"](pattern=pattern, regex=True)
        assert "without backreferences" in str(err.value) and "regex=false" in str(err.value)
    with pytest.raises(ToolError, match="at most 1000 are accepted"):
        tools["files__search"](pattern="a" * 1001, regex=True)
    with pytest.raises(ToolError, match="at most 1000 are accepted"):
        tools["files__glob"](pattern="*" * 1001)
    with pytest.raises(ToolError, match="'\\*\\*' can only be an entire path component"):
        tools["files__glob"](pattern="a**b")
    # a literal search is literal, and its line ending does not get in the way of '$'
    assert tools["files__search"](pattern="(ab)").startswith("No matches")
    assert tools["files__search"](pattern="ab$", regex=True) == "a.txt:1: abab"


def test_regex_without_re2_says_how_to_install_it(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "re2", None)  # import re2 now raises ImportError
    (tmp_path / "a.txt").write_text("abc\n")
    tools = {t.name: t for t in Capability.files(str(tmp_path)).toolset}
    with pytest.raises(ToolError, match=r"pip install 'loom-nb\[files\]'"):
        tools["files__search"](pattern="a.c", regex=True)
    assert tools["files__search"](pattern="abc", ignore_case=True) == "a.txt:1: abc"


def test_regex_lines_keep_their_meaning_with_any_line_ending(tmp_path: Path) -> None:
    # A whole file is looked at first for speed; what matches is still decided line by line.
    (tmp_path / "crlf.txt").write_bytes(b"a\r\nb\r\nc")
    (tmp_path / "cr.txt").write_bytes(b"x\ry")
    tools = {t.name: t for t in Capability.files(str(tmp_path)).toolset}
    search = tools["files__search"]
    assert search(pattern="^b$", regex=True) == "crlf.txt:2: b"
    assert search(pattern=r"\Ab\z", regex=True) == "crlf.txt:2: b"
    assert search(pattern="(?-m)^y$", regex=True) == "cr.txt:2: y"
    assert search(pattern=r"a\sb", regex=True).startswith("No matches")  # never across lines
    assert search(pattern="A$", regex=True, ignore_case=True) == "crlf.txt:1: a"
