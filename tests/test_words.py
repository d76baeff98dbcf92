"""Messages name types with the right article ("an int", "a str")."""

from __future__ import annotations

import pytest

from loom_nb import ConfigError
from loom_nb._words import a_type, article
from loom_nb.evaluation import normalize_tasks


@pytest.mark.parametrize(("name", "expected"), [
    ("int", "an int"), ("str", "a str"), ("Agent", "an Agent"), ("object", "an object"),
    ("ellipsis", "an ellipsis"), ("UUID", "a UUID"), ("Usage", "a Usage"), ("NoneType", "a NoneType"),
    ("Inbox", "an Inbox"), ("Unit", "a Unit"),
])
def test_article(name: str, expected: str) -> None:
    assert article(name) == expected


def test_a_type_and_a_message_that_uses_it() -> None:
    assert a_type(3) == "an int" and a_type([]) == "a list"
    with pytest.raises(ConfigError, match=r"Task 1 is an int;"):
        normalize_tasks(["a goal", 3])
