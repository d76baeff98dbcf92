"""Capability.skills: the index in the system prompt, the text on demand, confinement, bad files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from loom_nb import Agent, Capability, ConfigError, Model
from loom_nb.capability.skills import parse_front_matter

PDF_SKILL = """\
---
name: pdf-forms
description: >
  Fill in PDF forms.
  Use when the user asks to complete a form.
license: "MIT"
metadata:
  author: someone
  version: 1
---
# Filling PDF forms

1. Read the form's fields with scripts/fields.py.
2. Fill them in.
"""

CSV_SKILL = """\
---
# a comment
name: 'csv-cleanup'
description: Clean messy CSV files: fix encodings,
  drop empty rows.   # trailing comment
---
Use pandas.
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def skills_dir(tmp_path: Path) -> Path:
    root = tmp_path / "skills"
    write(root / "pdf" / "SKILL.md", PDF_SKILL)
    write(root / "pdf" / "scripts" / "fields.py", "print('fields')\n")
    write(root / "pdf" / "reference.md", "# Reference\nField types.\n")
    write(root / "pdf" / ".hidden", "not listed")
    write(root / "csv" / "SKILL.md", CSV_SKILL)
    write(root / "notes" / "README.md", "a folder without SKILL.md is not a skill")
    write(tmp_path / "secret.txt", "TOP SECRET")
    return root


def call(tool: str, **args) -> dict:
    return {"tool": tool, "args": args}


def test_index_in_system_prompt_and_load_returns_the_body(skills_dir: Path) -> None:
    cap = Capability.skills(str(skills_dir))
    assert (cap.kind, cap.name, [t.name for t in cap.toolset]) == ("skills", "skills", ["skills__load"])
    assert cap.toolset[0].read_only
    model = Model.scripted([call("skills__load", skill="pdf-forms"), "done"])
    result = Agent(model, "Be helpful.", capabilities=[cap]).run_sync("fill my form")
    assert result.status == "completed"
    system = model.requests[0].system
    assert system.startswith("Be helpful.")
    assert "call skills__load" in system
    assert "- csv-cleanup: Clean messy CSV files: fix encodings, drop empty rows." in system
    assert "- pdf-forms: Fill in PDF forms. Use when the user asks to complete a form." in system
    assert "Filling PDF forms" not in system  # the body is not in the context until loaded
    (loaded,) = result.tool_calls
    assert not loaded.is_error
    assert loaded.content.startswith("# Skill: pdf-forms\n\n# Filling PDF forms\n\n1. Read")
    assert "name: pdf-forms" not in loaded.content  # the front matter is not repeated
    assert "- reference.md\n- scripts/fields.py" in loaded.content
    assert ".hidden" not in loaded.content and "SKILL.md" not in loaded.content.split("\n\n")[-1]
    assert "file=PATH" in loaded.content


def test_load_a_listed_file_and_refuse_everything_outside(skills_dir: Path, tmp_path: Path) -> None:
    os.symlink(tmp_path / "secret.txt", skills_dir / "pdf" / "escape.txt")
    load = Capability.skills(skills_dir, name="kb").toolset[0]
    assert load.name == "kb__load"

    def run(**args):
        import asyncio

        return asyncio.run(load.invoke(args))

    ok = run(skill="pdf-forms", file="scripts/fields.py")
    assert (ok.is_error, ok.content) == (False, "print('fields')\n")
    listing = run(skill="pdf-forms").content
    assert "escape.txt" not in listing  # a symlink that leads out is not offered
    for bad, why in [("../../secret.txt", "not inside the skill's folder"),
                     (str(tmp_path / "secret.txt"), "not inside the skill's folder"),
                     ("escape.txt", "leads outside the skill's folder"),
                     ("../csv/SKILL.md", "not inside the skill's folder"),
                     ("missing.md", "does not exist")]:
        outcome = run(skill="pdf-forms", file=bad)
        assert outcome.is_error and why in outcome.content, (bad, outcome.content)
        assert "TOP SECRET" not in outcome.content
    unknown = run(skill="../pdf")
    assert unknown.is_error
    assert unknown.content == ("There is no skill named '../pdf'. Available skills: csv-cleanup, "
                               "pdf-forms.")


def test_unknown_skill_goes_back_to_the_model(skills_dir: Path) -> None:
    model = Model.scripted([call("skills__load", skill="excel"), "no such skill"])
    result = Agent(model, capabilities=[Capability.skills(skills_dir)]).run_sync("x")
    (attempt,) = result.tool_calls
    assert attempt.is_error and "There is no skill named 'excel'" in attempt.content
    assert "csv-cleanup, pdf-forms" in attempt.content
    assert result.status == "completed"


def test_a_single_skill_folder_and_edits_show_up_on_load(skills_dir: Path) -> None:
    cap = Capability.skills(skills_dir / "csv")
    assert "- csv-cleanup:" in cap.instructions and "pdf-forms" not in cap.instructions
    write(skills_dir / "csv" / "SKILL.md", CSV_SKILL.replace("Use pandas.", "Use polars."))
    import asyncio

    outcome = asyncio.run(cap.toolset[0].invoke({"skill": "csv-cleanup"}))
    assert outcome.content == "# Skill: csv-cleanup\n\nUse polars."


@pytest.mark.parametrize(("text", "message"), [
    ("# no front matter\n", "no front matter"),
    ("---\nname: a\ndescription: b\n", "front matter is not closed"),
    ("---\ndescription: only a description\n---\nbody", "has no 'name'"),
    ("---\nname: a-skill\n---\nbody", "has no 'description'"),
    ("---\nname: a-skill\ndescription: \"\"\n---\nbody", "has no 'description'"),
    ("---\nname: a skill with spaces\ndescription: d\n---\n", "is not usable"),
    ("---\nname: a\n- not a key\ndescription: d\n---\n", "line 3 ('- not a key') is not a 'key: value'"),
    ("---\nname: 'a\ndescription: d\n---\n", "quote that is not closed"),
])
def test_malformed_front_matter_is_a_config_error_naming_the_file(
        tmp_path: Path, text: str, message: str) -> None:
    skill_file = write(tmp_path / "broken" / "SKILL.md", text)
    with pytest.raises(ConfigError) as info:
        Capability.skills(tmp_path)
    assert str(skill_file) in str(info.value) and message in str(info.value)


def test_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is not a folder"):
        Capability.skills(tmp_path / "nope")
    with pytest.raises(ConfigError, match="no skill found"):
        Capability.skills(tmp_path)
    write(tmp_path / "a" / "SKILL.md", "---\nname: same\ndescription: one\n---\n")
    write(tmp_path / "b" / "SKILL.md", "---\nname: same\ndescription: two\n---\n")
    with pytest.raises(ConfigError, match="Two skills are named 'same'"):
        Capability.skills(tmp_path)
    with pytest.raises(ConfigError, match="unknown option"):
        Capability.skills(tmp_path, root="x")


def test_front_matter_subset() -> None:
    meta, body = parse_front_matter(
        "---\n"
        "name: x\n"
        "folded: >-\n  one\n  two\n\n  three\n"
        "literal: |\n  line 1\n    indented\n"
        "double: \"tab\\there \\u00e9\"\n"
        "single: 'it''s'\n"
        "plain: a: b # comment\n"
        "---\nthe body\n", "test")
    assert meta == {"name": "x", "folded": "one two\nthree", "literal": "line 1\n  indented",
                    "double": "tab\there é", "single": "it's", "plain": "a: b"}
    assert body == "the body"
