"""MaildirBackend: exact bytes in new/, nothing left behind on abort or failure, real fsyncs."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest
import trio

import trimail.delivery.maildir as maildir_module
from trimail.delivery.backend import DeliveryError
from trimail.delivery.maildir import MaildirBackend

from .messages import TRACE, make_message

#: CRLF line ends, a bare LF and a bare CR, a NUL and every 8-bit byte: stored as they came.
CONTENT_CHUNKS = (
    b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: caf\xc3\xa9\r\n\r\n",
    b"line one\r\n.starts with a dot after unstuffing\r\n",
    b"bare LF\nbare CR\rNUL\x00 and 8-bit: " + bytes(range(128, 256)) + b"\r\n",
    b"last line\r\n",
)
SPILL_THRESHOLD = 1024


def listing(backend: MaildirBackend, sub: str) -> list[str]:
    return sorted(os.listdir(backend.root / sub))


async def prepared(root: Path, spill_threshold: int = SPILL_THRESHOLD) -> MaildirBackend:
    backend = MaildirBackend(root, spill_threshold=spill_threshold)
    await backend.prepare()
    return backend


def large_chunks() -> list[bytes]:
    """About 5 KiB in lines of 100 bytes: well past the 1 KiB spill threshold."""
    return [b"%04d " % number + b"x" * 93 + b"\xff\r\n" for number in range(50)]


async def test_prepare_creates_tmp_new_and_cur(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "maildir"
    backend = MaildirBackend(root)
    await backend.prepare()
    for sub in ("tmp", "new", "cur"):
        assert (root / sub).is_dir()
        assert os.listdir(root / sub) == []
    # A second prepare (every server start) keeps existing directories and their messages.
    (root / "new" / "kept").write_bytes(b"x")
    await backend.prepare()
    assert listing(backend, "new") == ["kept"]


async def test_committed_message_has_exact_bytes(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    for chunk in CONTENT_CHUNKS:
        await spool.write(chunk)
    # Well under the spill threshold, so nothing touches the disk before commit.
    assert listing(backend, "tmp") == []
    name = await spool.commit()
    assert listing(backend, "new") == [name]
    assert (backend.root / "new" / name).read_bytes() == TRACE + b"".join(CONTENT_CHUNKS)
    assert listing(backend, "tmp") == []
    assert listing(backend, "cur") == []


async def test_committed_file_is_private(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    await spool.write(b"Subject: secret\r\n\r\nbody\r\n")
    name = await spool.commit()
    mode = (backend.root / "new" / name).stat().st_mode
    assert stat.S_IMODE(mode) & 0o077 == 0


async def test_large_message_spills_to_tmp_and_commits_exact_bytes(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    chunks = large_chunks()
    for chunk in chunks:
        await spool.write(chunk)
    [spilled] = listing(backend, "tmp")
    assert (backend.root / "tmp" / spilled).stat().st_size >= SPILL_THRESHOLD
    name = await spool.commit()
    assert name == spilled
    assert (backend.root / "new" / name).read_bytes() == TRACE + b"".join(chunks)
    assert listing(backend, "tmp") == []


async def test_empty_content_stores_only_the_trace_headers(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    name = await backend.begin(make_message()).commit()
    assert (backend.root / "new" / name).read_bytes() == TRACE


async def test_abort_of_small_message_leaves_nothing(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    await spool.write(b"Subject: never\r\n\r\nbody\r\n")
    await spool.abort()
    assert listing(backend, "new") == []
    assert listing(backend, "tmp") == []
    await spool.abort()  # safe to call twice
    assert listing(backend, "tmp") == []


async def test_abort_of_spilled_message_removes_tmp_file(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    for chunk in large_chunks():
        await spool.write(chunk)
    assert len(listing(backend, "tmp")) == 1
    await spool.abort()
    assert listing(backend, "new") == []
    assert listing(backend, "tmp") == []
    await spool.abort()  # safe to call twice
    assert listing(backend, "tmp") == []


async def test_abort_after_commit_keeps_the_delivered_message(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    await spool.write(b"body\r\n")
    name = await spool.commit()
    await spool.abort()
    assert listing(backend, "new") == [name]


def _fail_rename(src: object, dst: object) -> None:
    raise OSError(28, "No space left on device")


def _fail_fsync(fd: int) -> None:
    raise OSError(5, "Input/output error")


def _fail_fsync_directory(path: Path) -> None:
    raise OSError(5, "Input/output error")


@pytest.mark.parametrize("large", [False, True], ids=["buffered", "spilled"])
@pytest.mark.parametrize("failure", ["fsync", "rename", "directory-fsync"])
async def test_failed_commit_raises_delivery_error_and_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str, large: bool
) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())
    for chunk in large_chunks() if large else list(CONTENT_CHUNKS):
        await spool.write(chunk)
    match failure:
        case "fsync":
            monkeypatch.setattr(os, "fsync", _fail_fsync)
        case "rename":
            monkeypatch.setattr(os, "rename", _fail_rename)
        case _:
            monkeypatch.setattr(maildir_module, "_fsync_directory", _fail_fsync_directory)
    with pytest.raises(DeliveryError, match="maildir write failed"):
        await spool.commit()
    monkeypatch.undo()
    assert listing(backend, "new") == []
    assert listing(backend, "tmp") == []
    await spool.abort()  # the session may still abort; that must be harmless
    assert listing(backend, "new") == []


async def test_failed_spill_write_then_abort_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = await prepared(tmp_path)
    spool = backend.begin(make_message())

    def full_disk(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        for chunk in large_chunks():
            await spool.write(chunk)
    monkeypatch.undo()
    await spool.abort()
    assert listing(backend, "new") == []
    assert listing(backend, "tmp") == []


@pytest.mark.parametrize("large", [False, True], ids=["buffered", "spilled"])
async def test_commit_fsyncs_file_then_renames_then_fsyncs_new_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, large: bool
) -> None:
    backend = await prepared(tmp_path)
    events: list[tuple[str, str, int]] = []
    real_fsync, real_rename = os.fsync, os.rename

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
        events.append(("fsync", kind, info.st_ino))
        real_fsync(fd)

    def recording_rename(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        events.append(("rename", f"{src} -> {dst}", os.stat(dst).st_ino))

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "rename", recording_rename)
    spool = backend.begin(make_message())
    for chunk in large_chunks() if large else list(CONTENT_CHUNKS):
        await spool.write(chunk)
    assert events == []
    name = await spool.commit()
    recorded = list(events)  # what had happened when commit returned
    monkeypatch.undo()

    tmp_file, new_file = backend.root / "tmp" / name, backend.root / "new" / name
    file_inode = new_file.stat().st_ino
    assert recorded == [
        ("fsync", "file", file_inode),
        ("rename", f"{tmp_file} -> {new_file}", file_inode),
        ("fsync", "directory", (backend.root / "new").stat().st_ino),
    ]


async def test_file_names_are_unique_across_many_messages(tmp_path: Path) -> None:
    backend = await prepared(tmp_path)
    names = []
    for _ in range(200):
        # The same queue id every time: uniqueness must not rest on the caller.
        spool = backend.begin(make_message(queue_id="SAMEID"))
        await spool.write(b"body\r\n")
        names.append(await spool.commit())
    assert len(set(names)) == 200
    assert listing(backend, "new") == sorted(names)


def test_unique_name_is_unique_and_has_no_reserved_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Maildir reserves "/" (path separator) and ":" (info suffix) in file names.
    monkeypatch.setattr(socket, "gethostname", lambda: "odd/host:name")
    backend = MaildirBackend(tmp_path)
    names = {backend.unique_name("4Fq2Zk9TQ1") for _ in range(1000)}
    assert len(names) == 1000
    for name in names:
        assert "/" not in name
        assert ":" not in name
        assert name.endswith(r".odd\057host\072name")
        assert "4Fq2Zk9TQ1" in name


async def test_concurrent_messages_each_commit_their_own_bytes(tmp_path: Path) -> None:
    backend = MaildirBackend(tmp_path, max_threads=2, spill_threshold=SPILL_THRESHOLD)
    await backend.prepare()
    stored: dict[str, bytes] = {}

    async def deliver(number: int) -> None:
        spool = backend.begin(make_message(queue_id=f"Q{number}"))
        body = [b"message %d line %d\r\n" % (number, line) for line in range(number * 10)]
        for chunk in body:
            await spool.write(chunk)
            await trio.lowlevel.checkpoint()
        stored[await spool.commit()] = TRACE + b"".join(body)

    async with trio.open_nursery() as nursery:
        for number in range(20):
            nursery.start_soon(deliver, number)
    assert listing(backend, "new") == sorted(stored)
    for name, data in stored.items():
        assert (backend.root / "new" / name).read_bytes() == data
    assert listing(backend, "tmp") == []


async def test_unix_newlines_convert_every_crlf_even_split_across_chunks(tmp_path: Path) -> None:
    backend = MaildirBackend(tmp_path, unix_newlines=True, spill_threshold=SPILL_THRESHOLD)
    await backend.prepare()
    spool = backend.begin(make_message())
    body = b"Subject: lf\r\n\r\n" + b"x" * 2000 + b"\r\nend\r\n"
    # Split inside a CRLF, and large enough to spill to tmp/ midway.
    cut = body.index(b"\r\nend")
    for piece in (body[: cut + 1], body[cut + 1 :]):
        await spool.write(piece)
    name = await spool.commit()
    stored = (backend.root / "new" / name).read_bytes()
    assert stored == TRACE.replace(b"\r\n", b"\n") + body.replace(b"\r\n", b"\n")
    assert b"\r" not in stored
