"""Start writing a file's dirty pages to disk without waiting for them.

fsync both starts the data write and waits for it, so fsyncing a batch of files one after the
other waits for one disk round trip per file. Starting the writeback of every file first lets
the disk work on all of them at once; the fsyncs that follow then mostly find the data written
and only wait for what is left (measured: about 1.5-2x more messages per second for batches of
1 KiB messages on ext4). It is only a hint: the fsync after it is what makes a file durable and
what reports an error.

Linux has ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` for exactly this, but Python's os module
does not wrap it, so it is called through ctypes; elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable

#: From <fcntl.h>: initiate writeback of dirty pages in the range, do not wait.
SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int], None] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    function.argtypes = (ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint)
    function.restype = ctypes.c_int

    def start(fd: int) -> None:
        # Offset 0 and length 0 mean "the whole file". A failure here is ignored on purpose:
        # the fsync that must follow meets the same error and reports it.
        function(fd, 0, 0, SYNC_FILE_RANGE_WRITE)

    return start


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int) -> None:
    """Ask the kernel to begin writing ``fd``'s dirty pages now; returns at once."""
    if _sync_file_range is not None:
        _sync_file_range(fd)


def available() -> bool:
    """Whether ``start_writeback`` does anything on this platform."""
    return _sync_file_range is not None
