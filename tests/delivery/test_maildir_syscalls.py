"""The Maildir batch as the kernel sees it, under strace: the order of its system calls, and
fsync failures injected where no test double can reach (the C module calls libc directly).

Each case runs a small script in a fresh interpreter under ``strace``, for the C module's
version and the Python one. Nothing before the batch calls fsync, so the batch's fsyncs are
numbered 1..3 (the files, in order) and 4 (new/).
"""

from __future__ import annotations

import errno
import json
import re
from pathlib import Path

import pytest

import trimail.delivery.maildir as maildir_module

from ..extensions import NOT_BUILT
from ..strace import needs_strace, run_python_traced

C_BUILT = maildir_module._store_batch_in_c is not None

SCRIPT = """
import json, os, sys
from pathlib import Path
import trimail.delivery.maildir as maildir
root, version = Path(sys.argv[1]), sys.argv[2]
if version == "python":
    maildir._store_batch_in_c = None
assert (maildir._store_batch_in_c is not None) == (version == "c")
handler = maildir.MaildirHandler(root)
handler._make_directories()
jobs = [maildir._StoreJob(f"m{i}", b"message %d" % i, None, maildir._identity) for i in range(3)]
outcomes = handler._store_batch(jobs)
print(json.dumps({
    "outcomes": [o if isinstance(o, str) else o.errno for o in outcomes],
    "tmp": sorted(os.listdir(root / "tmp")),
    "new": sorted(os.listdir(root / "new")),
}))
"""

#: How strace -y shows the current directory argument: ``AT_FDCWD</its/path>, ``.
CWD = r"AT_FDCWD(?:<[^>]*>)?, "
VERSIONS = [
    pytest.param("c", marks=pytest.mark.skipif(not C_BUILT, reason=NOT_BUILT)),
    "python",
]


pytestmark = needs_strace


def run_traced(
    tmp_path: Path, version: str, *strace_options: str
) -> tuple[dict[str, list[object]], str]:
    """The script's report and strace's log of its system calls."""
    log = tmp_path / "strace.log"
    output = run_python_traced(
        log, SCRIPT, str(tmp_path / "Maildir"), version, options=("-y", *strace_options)
    )
    report: dict[str, list[object]] = json.loads(output)
    return report, log.read_text()


@pytest.mark.parametrize("version", VERSIONS)
def test_each_file_is_fsynced_and_closed_before_its_rename_and_new_after_all(
    tmp_path: Path, version: str
) -> None:
    report, log = run_traced(
        tmp_path, version, "-e", "trace=openat,fsync,close,rename,renameat,renameat2"
    )
    assert report == {"outcomes": ["m0", "m1", "m2"], "tmp": [], "new": ["m0", "m1", "m2"]}
    maildir = re.escape(str(tmp_path / "Maildir"))
    events: list[str] = []
    for line in log.splitlines():
        if match := re.search(rf"openat\({CWD}\"{maildir}/tmp/(m\d)\", O_WRONLY", line):
            events.append(f"create {match[1]}")
        elif match := re.search(rf"fsync\(\d+<{maildir}/tmp/(m\d)>\)\s+= 0", line):
            events.append(f"fsync {match[1]}")
        elif match := re.search(rf"close\(\d+<{maildir}/tmp/(m\d)>\)\s+= 0", line):
            events.append(f"close {match[1]}")
        elif match := re.search(
            rf"rename(?:at2?)?\((?:{CWD})?\"{maildir}/tmp/(m\d)\", (?:{CWD})?"
            rf"\"{maildir}/new/\1\"",
            line,
        ):
            events.append(f"rename {match[1]}")
        elif re.search(rf"fsync\(\d+<{maildir}/new>\)\s+= 0", line):
            events.append("fsync new/")
    assert events == [
        "create m0",
        "create m1",
        "create m2",
        "fsync m0",
        "close m0",
        "fsync m1",
        "close m1",
        "fsync m2",
        "close m2",
        "rename m0",
        "rename m1",
        "rename m2",
        "fsync new/",
    ]


#: (which fsync fails, what the batch reports): the second file's alone, or new/'s, which
#: fails the whole batch and unlinks every file it had renamed.
FSYNC_FAILURES = [
    pytest.param(
        2, {"outcomes": ["m0", errno.EIO, "m2"], "tmp": [], "new": ["m0", "m2"]}, id="file"
    ),
    pytest.param(4, {"outcomes": [errno.EIO] * 3, "tmp": [], "new": []}, id="new-directory"),
]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("failing_fsync", "expected"), FSYNC_FAILURES)
def test_a_failed_fsync_fails_what_it_covers_and_leaves_nothing(
    tmp_path: Path, version: str, failing_fsync: int, expected: dict[str, list[object]]
) -> None:
    inject = f"inject=fsync:error=EIO:when={failing_fsync}"
    report, _ = run_traced(tmp_path, version, "-e", "trace=fsync", "-e", inject)
    assert report == expected
