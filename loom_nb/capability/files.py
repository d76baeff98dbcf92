"""Capability.files: not built yet."""

from __future__ import annotations

from typing import Any

from . import Capability, not_yet


def files_capability(root: str, **options: Any) -> Capability:
    not_yet("Capability.files")
