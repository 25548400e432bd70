"""The Maildir's small batches in C and in Python: the same files and the same outcomes, on a
real disk with real faults (the C module calls no ``os`` function a test could patch)."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import signal
import stat
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import trimail.delivery.maildir as maildir_module
from trimail import _extensions
from trimail.delivery.maildir import MaildirHandler, _BatchInC, _identity, _StoreJob

from ..extensions import NOT_BUILT, require_built

c_store_batch: _BatchInC | None = None
with contextlib.suppress(ImportError):  # installed without a C compiler
    from trimail.delivery._maildir_batch import store_batch as c_store_batch
BUILT = c_store_batch is not None


@pytest.fixture(
    params=[
        pytest.param(
            "c",
            marks=pytest.mark.skipif(not BUILT, reason=NOT_BUILT),
        ),
        "python",
    ]
)
def handler(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MaildirHandler]:
    """A Maildir whose small batches take the C module's steps, then Python's."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(maildir_module, "_store_batch_in_c", c_store_batch)
        if request.param == "python":
            patch.setattr(maildir_module, "_store_batch_in_c", None)
        handler = MaildirHandler(tmp_path / "Maildir")
        handler._make_directories()
        yield handler


def jobs_of(*contents: bytes) -> list[_StoreJob]:
    return [
        _StoreJob(f"m{index}", content, None, _identity) for index, content in enumerate(contents)
    ]


def files_in(handler: MaildirHandler, sub: str) -> dict[str, bytes]:
    directory = handler.root / sub
    return {name: (directory / name).read_bytes() for name in sorted(os.listdir(directory))}


def error_of(outcome: str | Exception) -> int | None:
    assert isinstance(outcome, OSError), outcome
    return outcome.errno


def test_the_c_module_is_built_wherever_a_c_compiler_is() -> None:
    require_built(BUILT)


def test_the_maildir_uses_the_c_module_unless_it_is_switched_off() -> None:
    expected = c_store_batch if _extensions.ENABLED else None
    assert maildir_module._store_batch_in_c is expected
    assert maildir_module.C_BATCHES is (expected is not None)


def test_a_batch_stores_every_file_whole_and_private(handler: MaildirHandler) -> None:
    contents = [b"", b"a\r\n", bytes(range(256)) * 300, b"x" * 70_000]
    outcomes = handler._store_batch(jobs_of(*contents))
    assert outcomes == ["m0", "m1", "m2", "m3"]
    assert files_in(handler, "new") == {f"m{i}": content for i, content in enumerate(contents)}
    assert files_in(handler, "tmp") == {}
    for name in outcomes:
        assert isinstance(name, str)
        assert stat.S_IMODE((handler.root / "new" / name).stat().st_mode) == 0o600


def test_a_file_that_cannot_be_created_fails_alone(handler: MaildirHandler) -> None:
    # O_EXCL: a file of the same name in tmp/ is someone else's and is left as it is.
    (handler.root / "tmp" / "m1").write_bytes(b"not ours")
    outcomes = handler._store_batch(jobs_of(b"zero", b"one", b"two"))
    assert outcomes[0] == "m0"
    assert error_of(outcomes[1]) == errno.EEXIST
    assert outcomes[2] == "m2"
    assert files_in(handler, "new") == {"m0": b"zero", "m2": b"two"}
    assert files_in(handler, "tmp") == {"m1": b"not ours"}


def test_a_file_that_cannot_be_renamed_fails_alone_and_leaves_nothing(
    handler: MaildirHandler,
) -> None:
    (handler.root / "new" / "m1" / "in-the-way").mkdir(parents=True)
    outcomes = handler._store_batch(jobs_of(b"zero", b"one", b"two"))
    assert error_of(outcomes[1]) in {errno.EISDIR, errno.ENOTEMPTY, errno.EEXIST}
    assert [outcomes[0], outcomes[2]] == ["m0", "m2"]
    assert files_in(handler, "tmp") == {}
    assert (handler.root / "new" / "m1").is_dir()


def test_a_failed_write_fails_alone_and_leaves_nothing(handler: MaildirHandler) -> None:
    # A file-size limit makes the kernel refuse the big file's write (EFBIG), on any disk.
    # Python ignores SIGXFSZ from startup; the test makes sure, so the limit cannot kill it.
    previous_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4096, hard))
    try:
        outcomes = handler._store_batch(jobs_of(b"small", b"y" * 10_000, b"small too"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, previous_handler)
    assert error_of(outcomes[1]) == errno.EFBIG
    assert [outcomes[0], outcomes[2]] == ["m0", "m2"]
    assert files_in(handler, "new") == {"m0": b"small", "m2": b"small too"}
    assert files_in(handler, "tmp") == {}


def bare_c_maildir(root: Path) -> tuple[_BatchInC, str, str]:
    """The C module's function, and the tmp/ and new/ prefixes of a fresh Maildir at root."""
    assert c_store_batch is not None
    (root / "tmp").mkdir()
    (root / "new").mkdir()
    return c_store_batch, f"{root}/tmp/", f"{root}/new/"


@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def test_c_a_failed_directory_fsync_unlinks_every_renamed_file(tmp_path: Path) -> None:
    # new/ that cannot be opened for its fsync: the batch's renames are not known durable,
    # so none of them may stay (test_maildir.py breaks the fsync itself in the Python version).
    store, tmp, new = bare_c_maildir(tmp_path)
    errors, directory_error, stranded = store(
        [(tmp + "a", new + "a", b"A"), (tmp + "b", new + "b", b"B")], f"{tmp_path}/missing"
    )
    assert (errors, directory_error, stranded) == ([0, 0], errno.ENOENT, [])
    assert os.listdir(tmp_path / "new") == []
    assert os.listdir(tmp_path / "tmp") == []


@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def test_c_reports_a_renamed_file_it_could_not_unlink_after_new_failed(tmp_path: Path) -> None:
    # Two jobs renamed onto the same name: after new/'s fsync fails, the first unlink removes
    # it and the second finds nothing there, so that file is reported (the wrapper logs it).
    store, tmp, new = bare_c_maildir(tmp_path)
    answer = store(
        [(tmp + "a", new + "same", b"A"), (tmp + "b", new + "same", b"B")], f"{tmp_path}/gone"
    )
    assert answer == ([0, 0], errno.ENOENT, [(1, errno.ENOENT)])
    assert os.listdir(tmp_path / "new") == []


def test_the_c_outcome_becomes_each_jobs_result_or_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The translation of the C module's answer, with a stand-in for it: an unlink that failed
    # after new/'s fsync failed is logged, as in the Python version.
    handler = MaildirHandler(tmp_path)

    def failed_directory_fsync(
        jobs: list[tuple[str, str, bytes]], new_directory: str, /
    ) -> tuple[list[int], int, list[tuple[int, int]]]:
        assert [job[2] for job in jobs] == [b"zero", b"one", b"two"]
        assert new_directory == handler._new
        return [0, errno.ENOSPC, 0], errno.EIO, [(2, errno.EPERM)]

    outcomes = handler._store_batch_c(failed_directory_fsync, jobs_of(b"zero", b"one", b"two"))
    assert [error_of(outcome) for outcome in outcomes] == [errno.EIO, errno.ENOSPC, errno.EIO]
    assert isinstance(outcomes[1], OSError)
    assert outcomes[1].filename == handler._tmp + "m1"
    assert isinstance(outcomes[0], OSError)
    assert outcomes[0].filename == handler._new
    assert "m2 stays in new/ after 451" in caplog.text

    def all_stored(
        jobs: list[tuple[str, str, bytes]], new_directory: str, /
    ) -> tuple[list[int], int, list[tuple[int, int]]]:
        return [0] * len(jobs), 0, []

    assert handler._store_batch_c(all_stored, jobs_of(b"a", b"b")) == ["m0", "m1"]


@pytest.mark.skipif(not BUILT, reason=NOT_BUILT)
def test_c_refuses_malformed_jobs_and_survives_a_path_that_changes_the_list(
    tmp_path: Path,
) -> None:
    store = c_store_batch
    assert store is not None
    new = str(tmp_path)
    assert store([], new) == ([], 0, [])
    bad_jobs: list[object] = [
        [("a", "b")],
        [(1, "b", b"")],
        [("a", "b", 3)],
        [("a\0", "b", b"")],
        [["a", "b", b""]],
        3,
    ]
    for bad in bad_jobs:
        with pytest.raises((TypeError, ValueError)):
            store(bad, new)  # type: ignore[arg-type]  # malformed on purpose
    assert os.listdir(tmp_path) == []

    # A malformed job after good ones: what the good ones hold is given back (a buffer still
    # exported would make the bytearray refuse to grow; a lost reference shows in the count).
    held = bytearray(b"content")
    path = os.fsencode(f"{tmp_path}/p")  # bytes: the module holds this very object
    references = sys.getrefcount(path)
    with pytest.raises(TypeError):
        store([(path, path, held), (path, path, held), ("a", "b")], new)  # type: ignore[list-item]
    held.extend(b" grows")
    assert sys.getrefcount(path) == references
    assert os.listdir(tmp_path) == []

    jobs: list[tuple[object, str, bytes]] = []

    class ClearsTheList:
        """A path whose conversion empties the job list the C module is reading."""

        def __fspath__(self) -> str:
            jobs.clear()
            return f"{tmp_path}/cleared"

    jobs += [(ClearsTheList(), f"{tmp_path}/x", b"1"), (f"{tmp_path}/y", f"{tmp_path}/z", b"2")]
    errors, _, _ = store(jobs, new)  # type: ignore[arg-type]  # a PathLike works as a str
    assert errors == [0, 0]
    assert sorted(os.listdir(tmp_path)) == ["x", "z"]
