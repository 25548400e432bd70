"""start_writeback: a hint that never fails (the fsync after it reports errors), and on Linux
really starts the write, so the file's dirty pages drain without an fsync."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from trimail.delivery import writeback


def test_available_on_linux() -> None:
    assert writeback.available() == sys.platform.startswith("linux")


def test_start_writeback_on_a_written_file_then_fsync(tmp_path: Path) -> None:
    path = tmp_path / "message"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.write(fd, b"x" * 100_000)
        writeback.start_writeback(fd)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert path.read_bytes() == b"x" * 100_000


def test_a_bad_descriptor_is_ignored_for_the_fsync_to_report(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "gone", os.O_WRONLY | os.O_CREAT, 0o600)
    os.close(fd)
    writeback.start_writeback(fd)  # EBADF: ignored here...
    with pytest.raises(OSError):
        os.fsync(fd)  # ...and reported by the fsync that must follow
