"""What a test needs from the machine: skip with a reason when it is missing, fail under ``CI=true``
(CI installs everything, so there a missing tool or corpus is a broken setup, not a reason to skip)."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def unavailable(reason: str) -> NoReturn:
    """Skip the test with ``reason``; fail it instead under ``CI=true``."""
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


def tool(name: str, hint: str = "") -> str:
    """The path of the program ``name`` on PATH, or :func:`unavailable` (``hint``: how to install it)."""
    path = shutil.which(name)
    if path is None:
        unavailable(f"{name} not found on PATH" + (f" ({hint})" if hint else ""))
    return path
