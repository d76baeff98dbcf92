"""Small English helpers for messages, so that they read "an int", not "a int"."""

from __future__ import annotations

from typing import Any

# Names that start with a vowel letter but a consonant sound ("a UUID", "a Usage", "a URL").
_CONSONANT_SOUND = ("uu", "uni", "use", "usa", "uri", "url", "eu", "one")


def article(name: str) -> str:
    """``name`` with "a" or "an" before it: ``article("int") == "an int"``."""
    lowered = name.lower()
    vowel = lowered[:1] in ("a", "e", "i", "o", "u") and not lowered.startswith(_CONSONANT_SOUND)
    return f"{'an' if vowel else 'a'} {name}"


def a_type(value: Any) -> str:
    """The type of ``value`` with its article: ``a_type(3) == "an int"``."""
    return article(type(value).__name__)
