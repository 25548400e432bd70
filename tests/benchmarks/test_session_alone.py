"""benchmarks/session_alone.py must measure whole messages: every scripted message accepted."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    """benchmarks/ is scripts, not a package: load session_alone.py by path."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / "session_alone.py"
    spec = importlib.util.spec_from_file_location("benchmarks_session_alone", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


session_alone = _load()


@pytest.mark.parametrize("size", [1024, 102_400])
async def test_every_scripted_message_is_accepted(size: int) -> None:
    # measure() exits with a message unless the session accepted all of them.
    per_message = await session_alone.measure(7, size)
    assert per_message > 0


def test_the_body_has_the_asked_size_and_one_terminator() -> None:
    body = session_alone.body(102_400)
    assert abs(len(body) - 102_400) < len(session_alone.LINE) + 3
    assert body.endswith(b"\r\n.\r\n") and body.count(b"\r\n.\r\n") == 1
