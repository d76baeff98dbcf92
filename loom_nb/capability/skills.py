"""Capability.skills: skill folders whose index sits in the context and whose text loads on demand.

``Capability.skills("skills/")`` reads every folder under ``skills/`` that holds a ``SKILL.md``
(or ``skills/`` itself, if it holds one). A ``SKILL.md`` starts with front matter::

    ---
    name: pdf-forms
    description: Fill in PDF forms. Use when the user asks to complete a form.
    ---
    # How to fill in a PDF form
    ...

Only the index (each skill's name and description) goes into the context, in the capability's
``instructions`` (``kind="skills"``, so the context protocol can route it to the skill partition).
The model reads a skill's full text by calling ``{name}__load(skill=...)``; the answer also lists
the other files of the skill folder, which the same tool reads with ``file=...``. Reading is
confined to the skill's folder: ``..``, absolute paths and symlinks that lead out are refused.

The index is read when the capability is built (malformed front matter is a ``ConfigError`` then,
naming the file); the texts are read when loaded, so edits to a body show up without a rebuild.

Front matter is the simple subset of YAML that skill files use, parsed without a YAML library:
``key: value`` lines; values plain, ``"double"`` (JSON escapes) or ``'single'`` quoted (``''``
for a quote); block values ``>`` (folded) and ``|`` (literal) with indented lines; a plain value
continued on indented lines (folded); ``# comments``. A key with an empty value followed by indented
lines (``metadata:`` with nested keys) keeps those lines as raw text. Lists and flow mappings are not
parsed. ``name`` and ``description`` are required.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError, ToolError
from ..tools import tool
from . import Capability

__all__ = ["Skill", "parse_front_matter", "skills_capability"]

SKILL_FILE = "SKILL.md"
_SKILL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_CAPABILITY_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,31}$")
_KEY_LINE = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.-]*)\s*:(?:\s+(.*?))?\s*$")
_BLOCK = re.compile(r"^([>|])([+-]?)$")
#: Limits on what one load returns, so that a stray large file does not flood the context.
MAX_FILE_CHARS = 200_000
MAX_LISTED_FILES = 100


@dataclass(frozen=True)
class Skill:
    """One skill: its name and description from the front matter, and its folder."""

    name: str
    description: str
    folder: Path
    metadata: dict[str, str]


def skills_capability(path: str | os.PathLike[str], *, name: str = "skills",
                      **unknown: Any) -> Capability:
    """Skill folders under ``path``; only their index is in the context until one is loaded.

    Args:
        path: a folder of skill folders (each with a ``SKILL.md``), or one skill folder.
        name: the capability's name; the load tool is ``{name}__load``.
    """
    if unknown:
        raise ConfigError(f"Capability.skills got unknown option(s) {sorted(unknown)}; the only "
                          f"option is name=.")
    if not isinstance(name, str) or not _CAPABILITY_NAME.match(name):
        raise ConfigError(f"Capability.skills(name={name!r}): use a short label of letters, "
                          f"digits, '_' or '-' starting with a letter, e.g. name='skills'.")
    skills = find_skills(Path(path).expanduser())
    load_name = f"{name}__load"
    return Capability(name=name, kind="skills", instructions=_index(skills, load_name),
                      toolset=(_load_tool(skills, load_name),))


def find_skills(root: Path) -> dict[str, Skill]:
    """The skills under ``root`` by name; ConfigError for a missing folder or a bad SKILL.md."""
    if not root.is_dir():
        raise ConfigError(f"Capability.skills: {str(root)!r} is not a folder. Pass the folder that "
                          f"holds your skill folders (each with a {SKILL_FILE}).")
    if (root / SKILL_FILE).is_file():
        folders = [root]
    else:
        folders = sorted(p for p in root.iterdir()
                         if p.is_dir() and not p.name.startswith(".") and (p / SKILL_FILE).is_file())
    if not folders:
        raise ConfigError(f"Capability.skills: no skill found in {str(root)!r}: each skill is a "
                          f"folder with a {SKILL_FILE} file (front matter with name and "
                          f"description, then the instructions).")
    skills: dict[str, Skill] = {}
    for folder in folders:
        skill = read_skill(folder)
        if skill.name in skills:
            raise ConfigError(
                f"Two skills are named {skill.name!r}: {skills[skill.name].folder / SKILL_FILE} and "
                f"{folder / SKILL_FILE}. Give one of them another name.")
        skills[skill.name] = skill
    return skills


def read_skill(folder: Path) -> Skill:
    """A skill's front matter, checked; ConfigError naming the file and what is wrong."""
    file = folder / SKILL_FILE
    text = _read_confined(folder, SKILL_FILE, what=str(file), error=ConfigError)
    meta, _ = parse_front_matter(text, str(file))
    for key in ("name", "description"):
        if not meta.get(key, "").strip():
            raise ConfigError(f"{file}: the front matter has no {key!r}. Add a line such as "
                              f"'{key}: ...' between the '---' lines.")
    skill_name = meta["name"].strip()
    if not _SKILL_NAME.match(skill_name):
        raise ConfigError(f"{file}: the skill name {skill_name!r} is not usable: use letters, "
                          f"digits, '-', '_' or '.' (at most 64), e.g. 'pdf-forms'.")
    return Skill(name=skill_name, description=" ".join(meta["description"].split()),
                 folder=folder, metadata=meta)


# -- the index and the load tool ---------------------------------------------------------------------


def _index(skills: dict[str, Skill], load_name: str) -> str:
    lines = [
        ("Skills: instructions for particular kinds of tasks, kept out of this prompt until they "
         f"are needed. Before you work on a task that a skill covers, call {load_name} with its "
         f"name (skill=...) to read it, then follow it."),
        "Available skills:",
    ]
    lines += [f"- {s.name}: {s.description}" for s in skills.values()]
    return "\n".join(lines)


def _load_tool(skills: dict[str, Skill], load_name: str) -> Any:
    def load(skill: str, file: str | None = None) -> str:
        """Read a skill: its full instructions, and the list of the other files in its folder.

        Args:
            skill: the skill's name, as in the list of available skills.
            file: a file of the skill, by its path relative to the skill's folder (as listed when
                the skill is loaded); leave it out to read the skill's instructions.
        """
        found = skills.get(skill)
        if found is None:
            raise ToolError(f"There is no skill named {skill!r}. Available skills: "
                            f"{', '.join(sorted(skills))}.")
        if file is not None and file.strip() not in ("", SKILL_FILE):
            return _read_confined(found.folder, file, what=f"{file!r} of skill {skill!r}")
        return _render_skill(found, load_name)

    return tool(name=load_name, read_only=True, thread=True)(load)


def _render_skill(skill: Skill, load_name: str) -> str:
    file = skill.folder / SKILL_FILE
    text = _read_confined(skill.folder, SKILL_FILE, what=str(file))
    try:
        _, body = parse_front_matter(text, str(file))
    except ConfigError as exc:
        raise ToolError(f"The skill {skill.name!r} cannot be read now: {exc}") from None
    parts = [f"# Skill: {skill.name}", body.strip()]
    others = _other_files(skill.folder)
    if others:
        listing = "\n".join(f"- {p}" for p in others[:MAX_LISTED_FILES])
        if len(others) > MAX_LISTED_FILES:
            listing += f"\n- ... and {len(others) - MAX_LISTED_FILES} more"
        parts.append(f"Other files of this skill (read one with {load_name}(skill="
                     f"{json.dumps(skill.name)}, file=PATH)):\n{listing}")
    return "\n\n".join(p for p in parts if p)


def _other_files(folder: Path) -> list[str]:
    root = folder.resolve()
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for filename in sorted(filenames):
            path = Path(dirpath) / filename
            relative = path.relative_to(folder).as_posix()
            if filename.startswith(".") or relative == SKILL_FILE:
                continue
            if path.resolve().is_relative_to(root):  # symlinks that lead out are not offered
                found.append(relative)
        if len(found) > MAX_LISTED_FILES * 10:
            break
    return found


def _read_confined(folder: Path, relative: str, *, what: str,
                   error: type[Exception] = ToolError) -> str:
    """The text of ``folder/relative``, refusing anything that resolves outside ``folder``."""
    root = folder.resolve()
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts:
        raise error(f"{what} is not inside the skill's folder: give a path relative to the "
                    f"skill's folder, without '..', as listed when the skill is loaded.")
    target = (folder / candidate).resolve()
    if not target.is_relative_to(root):
        raise error(f"{what} leads outside the skill's folder (through a symlink), so it is not "
                    f"read.")
    if not target.is_file():
        raise error(f"{what} does not exist (or is not a file). Load the skill without file= to "
                    f"see the list of its files.")
    raw = target.read_bytes()[: MAX_FILE_CHARS * 4]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{what} is not a UTF-8 text file, so it cannot be shown.") from None
    if "\x00" in text:
        raise error(f"{what} is a binary file, so it cannot be shown.")
    if len(text) > MAX_FILE_CHARS:
        text = text[:MAX_FILE_CHARS] + f"\n[... cut at {MAX_FILE_CHARS} characters]"
    return text


# -- front matter ------------------------------------------------------------------------------------


def parse_front_matter(text: str, where: str) -> tuple[dict[str, str], str]:
    """The front matter's ``key: value`` pairs and the body after it (see the module docstring)."""
    lines = text.lstrip("\ufeff").splitlines()
    if not lines or lines[0].strip() != "---":
        raise ConfigError(f"{where}: no front matter. Start the file with a '---' line, then "
                          f"'name: ...' and 'description: ...' lines, then another '---' line.")
    try:
        end = next(i for i in range(1, len(lines)) if lines[i].strip() in ("---", "..."))
    except StopIteration:
        raise ConfigError(f"{where}: the front matter is not closed: add a '---' line after the "
                          f"'name:' and 'description:' lines.") from None
    meta = _parse_mapping(lines[1:end], where)
    return meta, "\n".join(lines[end + 1:])


def _parse_mapping(lines: list[str], where: str) -> dict[str, str]:
    meta: dict[str, str] = {}
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip() or line.lstrip().startswith("#"):
            i += 1
            continue
        match = _KEY_LINE.match(line)
        if line[:1].isspace() or not match:
            raise ConfigError(f"{where}: front matter line {i + 2} ({line.strip()!r}) is not a "
                              f"'key: value' line. Write each entry as 'key: value' at the start "
                              f"of a line; continue a long value on indented lines.")
        key, value = match.group(1), match.group(2) or ""
        block = []
        i += 1
        while i < len(lines) and (not lines[i].strip() or lines[i][:1].isspace()):
            block.append(lines[i])
            i += 1
        meta[key] = _value(value, block, f"{where}: front matter key {key!r}")
    return meta


def _value(value: str, block: list[str], where: str) -> str:
    style = _BLOCK.match(value)
    if style:
        return _block_scalar(block, folded=style.group(1) == ">")
    if block and not any(line.strip() for line in block):
        block = []
    if value[:1] in ("'", '"'):
        if block:
            raise ConfigError(f"{where}: a quoted value must end on its own line; for a long "
                              f"value write 'key: >' and the text on indented lines below.")
        return _quoted(value, where)
    if not value and block:
        # A nested mapping or list (e.g. metadata:): kept as raw text, not parsed.
        return _dedent(block)
    value = re.split(r"\s#", value, maxsplit=1)[0].strip()
    continued = [line.strip() for line in block if line.strip()]
    return " ".join([value, *continued]) if continued else value


def _quoted(value: str, where: str) -> str:
    quote = value[0]
    if len(value) < 2 or not value.endswith(quote):
        raise ConfigError(f"{where}: the value {value!r} opens a {quote} quote that is not closed "
                          f"on the same line.")
    inner = value[1:-1]
    if quote == "'":
        return inner.replace("''", "'")
    try:
        return str(json.loads(value))
    except json.JSONDecodeError:
        raise ConfigError(f"{where}: the double-quoted value {value!r} has an invalid escape; "
                          f"use single quotes to write it as it is.") from None


def _block_scalar(block: list[str], *, folded: bool) -> str:
    text = _dedent(block)
    if not folded:
        return text
    paragraphs = re.split(r"\n\s*\n", text)
    return "\n".join(" ".join(p.split()) for p in paragraphs).strip()


def _dedent(block: list[str]) -> str:
    while block and not block[-1].strip():
        block = block[:-1]
    indents = [len(line) - len(line.lstrip()) for line in block if line.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(line[cut:] for line in block).strip("\n")
