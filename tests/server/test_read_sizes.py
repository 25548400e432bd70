"""The session's reads as libc sees them: no read may cost a memory mapping.

``socket.recv(n)`` allocates ``n`` bytes (plus the bytes object's header) before it reads, then
shrinks them to what arrived. glibc's malloc serves 128 KiB or more with mmap, so a read size
at or over that turned every read into an mmap, an mremap and a munmap (and fresh zeroed
pages), whatever the size of what arrived: 0.7 of each per 1 KiB message under ``trimail
bench`` with 256 KiB DATA reads. Run under strace, since no test double sees malloc.

Whether a read maps also depends on the heap's state: a request over the threshold is served
from the heap if its free top happens to be large enough, and the threshold rises to the size
of any larger mapped block freed. The script fixes glibc's settings at a state stricter than
its defaults, the one that maps the most (the threshold at its starting 128 KiB, the free top
trimmed at once), so the test is the same whatever ran before. (In that state a read under the
threshold moves the heap's top with ``brk`` instead, which the test does not count: at the
defaults, as in the server, it does not happen per read.) glibc only: elsewhere ``mallopt``
and the threshold are not the same, and the test is skipped.
"""

from __future__ import annotations

import platform
import re
from pathlib import Path

import pytest

from ..strace import needs_strace, run_python_traced

pytestmark = [
    needs_strace,
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc settings"),
]

READS = 50

SCRIPT = f"""
import ctypes, socket, sys
from trimail.server.session import DATA_READ_SIZE, READ_SIZE
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
libc = ctypes.CDLL(None)
for setting, value in (M_TRIM_THRESHOLD, 0), (M_TOP_PAD, 0), (M_MMAP_THRESHOLD, 128 * 1024):
    assert libc.mallopt(setting, value) == 1
size = {{"command": READ_SIZE, "data": DATA_READ_SIZE}}[sys.argv[1]]
sender, receiver = socket.socketpair()
def mark(name):  # a line in strace's log
    try:
        open(name)
    except FileNotFoundError:
        pass
mark("/trimail-reads-begin")
for _ in range({READS}):
    sender.sendall(b"x" * 1024)
    data = receiver.recv(size)
    del data
mark("/trimail-reads-end")
"""
MAPPING = re.compile(r"^\d+ +(?:mmap|mremap|munmap)\(", re.MULTILINE)


@pytest.mark.parametrize("phase", ["command", "data"])
def test_a_read_allocates_from_the_heap_not_a_mapping(tmp_path: Path, phase: str) -> None:
    log = tmp_path / "strace.log"
    run_python_traced(log, SCRIPT, phase, options=("-e", "trace=openat,mmap,mremap,munmap"))
    text = log.read_text()
    between = text[text.index("/trimail-reads-begin") : text.index("/trimail-reads-end")]
    # A read size over the threshold maps and unmaps on every one of the reads.
    assert len(MAPPING.findall(between)) < READS // 10, between[:2000]
