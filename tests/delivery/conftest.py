from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from .messages import MessageFactory


@pytest.fixture
async def spool(tmp_path: Path) -> AsyncIterator[MessageFactory]:
    """Messages spooled (when large) in their own directory, tmp_path/"spool", apart from any
    Maildir, so a test can tell the handler's files from the message's."""
    directory = tmp_path / "spool"
    directory.mkdir()
    factory = MessageFactory(directory)
    try:
        yield factory
    finally:
        await factory.discard_all()
