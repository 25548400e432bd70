"""MaildirHandler: exact bytes in new/, durable (fsync, rename, fsync new/), nothing left in tmp/
or new/ after any failure, unique names, a bounded number of worker threads."""

from __future__ import annotations

import errno
import itertools
import os
import re
import socket
import stat
import threading
from pathlib import Path

import pytest
import trio
import trio.testing

import trimail.delivery.maildir as maildir_module
from trimail.delivery.maildir import COPY_CHUNK, MaildirHandler, UnixNewlines
from trimail.delivery.message import Message
from trimail.handler import DeliveryError

from .messages import QUEUE_ID, TRACE, MessageFactory, large_chunks, make_envelope

#: CRLF line ends, a bare LF and a bare CR, a NUL and every 8-bit byte: stored as they came.
CONTENT_CHUNKS = (
    b"From: alice@example.org\r\nTo: bob@example.com\r\nSubject: caf\xc3\xa9\r\n\r\n",
    b"line one\r\n.starts with a dot after unstuffing\r\n",
    b"bare LF\nbare CR\rNUL\x00 and 8-bit: " + bytes(range(128, 256)) + b"\r\n",
    b"last line\r\n",
)
CONTENT = b"".join(CONTENT_CHUNKS)
#: Patches go through the names the handler itself uses (the os module, so process-wide).
OS = "trimail.delivery.maildir.os."
LARGE = b"".join(large_chunks())


def listing(handler: MaildirHandler, sub: str) -> list[str]:
    return sorted(os.listdir(handler.root / sub))


def stored(handler: MaildirHandler, name: str) -> bytes:
    return (handler.root / "new" / name).read_bytes()


async def prepared(
    root: Path, *, max_threads: int = 16, unix_newlines: bool = False
) -> MaildirHandler:
    handler = MaildirHandler(root / "Maildir", max_threads=max_threads, unix_newlines=unix_newlines)
    await handler.prepare()
    return handler


async def make(spool: MessageFactory, size: str) -> tuple[Message, bytes]:
    """A message and its content: "small" stays in memory, "large" spilled to its spool file."""
    if size == "small":
        return await spool.small(CONTENT_CHUNKS), CONTENT
    return await spool.large(large_chunks()), LARGE


SIZES = pytest.mark.parametrize("size", ["small", "large"])


async def deliver(handler: MaildirHandler, message: Message) -> str:
    receipt = await handler.deliver(make_envelope(), message)
    assert isinstance(receipt, str)
    return receipt


# -- prepare ------------------------------------------------------------------------------------


async def test_prepare_creates_private_tmp_new_and_cur(tmp_path: Path) -> None:
    root = tmp_path / "deep" / "maildir"
    handler = MaildirHandler(root)
    await handler.prepare()
    for sub in ("tmp", "new", "cur"):
        assert (root / sub).is_dir()
        assert os.listdir(root / sub) == []
        assert stat.S_IMODE((root / sub).stat().st_mode) & 0o077 == 0
    assert handler.spool_directory == root / "tmp"


async def test_prepare_again_keeps_existing_messages(tmp_path: Path) -> None:
    handler = await prepared(tmp_path)
    # A second prepare (every server start) keeps existing directories and their messages.
    for sub in ("tmp", "new", "cur"):
        (handler.root / sub / "kept").write_bytes(sub.encode())
    await handler.prepare()
    for sub in ("tmp", "new", "cur"):
        assert listing(handler, sub) == ["kept"]
        assert (handler.root / sub / "kept").read_bytes() == sub.encode()


# -- what is stored -----------------------------------------------------------------------------


@SIZES
async def test_delivered_message_has_exact_bytes(
    tmp_path: Path, spool: MessageFactory, size: str
) -> None:
    handler = await prepared(tmp_path)
    message, content = await make(spool, size)
    name = await deliver(handler, message)
    assert listing(handler, "new") == [name]
    assert stored(handler, name) == TRACE + content
    assert listing(handler, "tmp") == []
    assert listing(handler, "cur") == []


async def test_every_byte_is_kept(tmp_path: Path, spool: MessageFactory) -> None:
    # CRLF, bare CR and LF, NUL and 8-bit: the handler stores bytes, it does not interpret them.
    handler = await prepared(tmp_path)
    name = await deliver(handler, await spool.small(CONTENT_CHUNKS))
    data = stored(handler, name)
    assert data.endswith(CONTENT)
    for needle in (b"\r\n", b"\nbare CR\r", b"\x00", bytes(range(128, 256)), b"caf\xc3\xa9"):
        assert needle in data


@SIZES
async def test_delivered_file_is_private(tmp_path: Path, spool: MessageFactory, size: str) -> None:
    handler = await prepared(tmp_path)
    message, _content = await make(spool, size)
    name = await deliver(handler, message)
    assert stat.S_IMODE((handler.root / "new" / name).stat().st_mode) == 0o600


async def test_empty_content_stores_only_the_trace_headers(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path)
    name = await deliver(handler, await spool.build())
    assert stored(handler, name) == TRACE


@pytest.mark.parametrize("copy_chunk", [COPY_CHUNK, 7, 1])
async def test_large_message_is_copied_from_its_spool_file(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch, copy_chunk: int
) -> None:
    monkeypatch.setattr(maildir_module, "COPY_CHUNK", copy_chunk)
    handler = await prepared(tmp_path)
    message = await spool.large(large_chunks())
    spooled = message.spooled_file
    assert spooled is not None
    name = await deliver(handler, message)
    assert stored(handler, name) == TRACE + LARGE
    # The spool file is the session's to discard: deliver leaves it as it was.
    assert spooled.read_bytes() == LARGE
    assert listing(handler, "tmp") == []


async def test_message_larger_than_one_copy_chunk(tmp_path: Path, spool: MessageFactory) -> None:
    handler = await prepared(tmp_path)
    lines = 25_000  # 2.5 MB: the copy takes three reads of COPY_CHUNK
    chunks = large_chunks(lines)
    message = spool.new()
    for start in range(0, lines, 500):  # 50 KB writes, as DATA arrives
        await message.write(b"".join(chunks[start : start + 500]))
    await message.seal()
    name = await deliver(handler, message)
    assert stored(handler, name) == TRACE + b"".join(chunks)


async def test_spooling_in_the_maildir_tmp_like_the_server(tmp_path: Path) -> None:
    """The server spools large messages in the handler's spool_directory (tmp/): after
    delivery only the spool file remains there, and discarding the message removes it."""
    handler = await prepared(tmp_path)
    factory = MessageFactory(handler.spool_directory)
    try:
        message = await factory.large(large_chunks())
        spooled = message.spooled_file
        assert spooled is not None
        assert listing(handler, "tmp") == [spooled.name]
        name = await deliver(handler, message)
        assert listing(handler, "tmp") == [spooled.name]
        assert stored(handler, name) == TRACE + LARGE
    finally:
        await factory.discard_all()
    assert listing(handler, "tmp") == []
    assert listing(handler, "new") == [name]


async def test_receipt_is_the_maildir_file_name(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(socket, "gethostname", lambda: "mx.test")
    handler = await prepared(tmp_path)
    message = await spool.small([b"body\r\n"], queue_id="18A2B3C4D5E6F0001")
    name = await deliver(handler, message)
    # Maildir's time.MusecPpidQn.host, with the queue id to find the file from the log.
    pattern = rf"\d+\.M\d+P{os.getpid()}Q\d+_18A2B3C4D5E6F0001\.mx\.test"
    assert re.fullmatch(pattern, name)


# -- failures -----------------------------------------------------------------------------------


class Failure:
    """A failing stand-in for one os function; records that it struck."""

    def __init__(self, error: int, name: str) -> None:
        self.error, self.name, self.struck = error, name, 0

    def fail(self) -> OSError:
        self.struck += 1
        return OSError(self.error, f"{os.strerror(self.error)} ({self.name})")


def install_failure(monkeypatch: pytest.MonkeyPatch, kind: str) -> Failure:
    """Make one step of ``_store`` fail, through the names trimail.delivery.maildir uses."""
    real_write, real_fsync = os.write, os.fsync
    match kind:
        case "write":
            failure = Failure(errno.ENOSPC, "write")

            def write(fd: int, data: bytes | memoryview) -> int:
                raise failure.fail()

            monkeypatch.setattr(OS + "write", write)
        case "short-write":
            # Part of the file is written, then the disk is full: a partial file to clean up.
            failure = Failure(errno.ENOSPC, "write")
            writes = itertools.count()

            def short_write(fd: int, data: bytes | memoryview) -> int:
                if next(writes) == 0:
                    return real_write(fd, data[: len(data) // 2 or 1])
                raise failure.fail()

            monkeypatch.setattr(OS + "write", short_write)
        case "fsync":
            failure = Failure(errno.EIO, "fsync")

            def fsync_file(fd: int) -> None:
                if not stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise failure.fail()
                real_fsync(fd)

            monkeypatch.setattr(OS + "fsync", fsync_file)
        case "rename":
            failure = Failure(errno.EXDEV, "rename")

            def rename(src: object, dst: object) -> None:
                raise failure.fail()

            monkeypatch.setattr(OS + "rename", rename)
        case "directory-fsync":
            # The rename already happened: the file was visible in new/ and must go again.
            failure = Failure(errno.EIO, "fsync")

            def fsync_directory(fd: int) -> None:
                if stat.S_ISDIR(os.fstat(fd).st_mode):
                    raise failure.fail()
                real_fsync(fd)

            monkeypatch.setattr(OS + "fsync", fsync_directory)
        case _:
            raise AssertionError(kind)
    return failure


@SIZES
@pytest.mark.parametrize("kind", ["write", "short-write", "fsync", "rename", "directory-fsync"])
async def test_failed_delivery_raises_delivery_error_and_leaves_nothing(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch, kind: str, size: str
) -> None:
    handler = await prepared(tmp_path)
    message, content = await make(spool, size)
    failure = install_failure(monkeypatch, kind)
    with pytest.raises(DeliveryError, match="maildir write failed") as caught:
        await handler.deliver(make_envelope(), message)
    monkeypatch.undo()
    assert failure.struck == 1
    assert isinstance(caught.value.__cause__, OSError)
    assert caught.value.__cause__.errno == failure.error
    assert listing(handler, "new") == []
    assert listing(handler, "tmp") == []
    # The handler still works, and the message is intact for the session to discard.
    assert await message.read() == content
    name = await deliver(handler, message)
    assert stored(handler, name) == TRACE + content


async def test_missing_tmp_directory_raises_delivery_error(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path)
    (handler.root / "tmp").rmdir()
    with pytest.raises(DeliveryError, match="maildir write failed"):
        await handler.deliver(make_envelope(), await spool.small(CONTENT_CHUNKS))
    assert listing(handler, "new") == []


async def test_vanished_spool_file_raises_delivery_error_and_leaves_nothing(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path)
    message = await spool.large(large_chunks())
    assert message.spooled_file is not None
    message.spooled_file.unlink()
    with pytest.raises(DeliveryError, match="maildir write failed"):
        await handler.deliver(make_envelope(), message)
    assert listing(handler, "new") == []
    assert listing(handler, "tmp") == []


# -- durability order ---------------------------------------------------------------------------


@SIZES
async def test_fsyncs_file_then_renames_then_fsyncs_new_directory(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch, size: str
) -> None:
    handler = await prepared(tmp_path)
    message, _content = await make(spool, size)
    events: list[tuple[str, str, int]] = []
    real_write, real_fsync, real_rename = os.write, os.fsync, os.rename

    def recording_write(fd: int, data: bytes | memoryview) -> int:
        events.append(("write", "file", os.fstat(fd).st_ino))
        return real_write(fd, data)

    def recording_fsync(fd: int) -> None:
        info = os.fstat(fd)
        kind = "directory" if stat.S_ISDIR(info.st_mode) else "file"
        events.append(("fsync", kind, info.st_ino))
        real_fsync(fd)

    def recording_rename(src: str | Path, dst: str | Path) -> None:
        real_rename(src, dst)
        events.append(("rename", f"{src} -> {dst}", os.stat(dst).st_ino))

    monkeypatch.setattr(OS + "write", recording_write)
    monkeypatch.setattr(OS + "fsync", recording_fsync)
    monkeypatch.setattr(OS + "rename", recording_rename)
    name = await deliver(handler, message)
    recorded = list(events)  # what had happened when deliver returned
    monkeypatch.undo()

    tmp_file, new_file = handler.root / "tmp" / name, handler.root / "new" / name
    file_inode = new_file.stat().st_ino
    directory_inode = (handler.root / "new").stat().st_ino
    # Only this message's file and new/ matter; anything else writing meanwhile is ignored.
    ours = [event for event in recorded if event[2] in (file_inode, directory_inode)]
    writes = list(itertools.takewhile(lambda event: event[0] == "write", ours))
    assert writes
    assert ours[len(writes) :] == [
        ("fsync", "file", file_inode),
        ("rename", f"{tmp_file} -> {new_file}", file_inode),
        ("fsync", "directory", directory_inode),
    ]


# -- names --------------------------------------------------------------------------------------


async def test_file_names_are_unique_across_many_messages(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path)
    names = []
    for number in range(200):
        # The same queue id every time: uniqueness must not rest on the caller.
        message = await spool.small([b"body %d\r\n" % number], queue_id="SAMEID")
        names.append(await deliver(handler, message))
    assert len(set(names)) == 200
    assert listing(handler, "new") == sorted(names)
    assert {stored(handler, name) for name in names} == {
        TRACE + b"body %d\r\n" % number for number in range(200)
    }


def test_unique_name_is_unique_and_escapes_reserved_characters(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Maildir reserves "/" (path separator) and ":" (info suffix) in file names.
    monkeypatch.setattr(socket, "gethostname", lambda: "odd/host:name")
    handler = MaildirHandler(tmp_path)
    other = MaildirHandler(tmp_path)  # a second handler in the same process
    names = {handler.unique_name(QUEUE_ID) for _ in range(1000)}
    names |= {other.unique_name(QUEUE_ID) for _ in range(1000)}
    assert len(names) == 2000
    for name in names:
        assert "/" not in name
        assert ":" not in name
        assert name.endswith(r".odd\057host\072name")
        assert f"_{QUEUE_ID}." in name


# -- concurrency --------------------------------------------------------------------------------


async def test_concurrent_deliveries_each_store_their_own_bytes(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path, max_threads=2)
    expected: dict[str, bytes] = {}

    async def one(number: int) -> None:
        # Every third message is large enough to spill; all are written as DATA would be.
        body = [b"message %d line %d\r\n" % (number, line) for line in range(number * 10)]
        message = spool.new(queue_id=f"Q{number}")
        for chunk in body:
            await message.write(chunk)
            await trio.lowlevel.checkpoint()
        await message.seal()
        expected[await deliver(handler, message)] = TRACE + b"".join(body)

    async with trio.open_nursery() as nursery:
        for number in range(30):
            nursery.start_soon(one, number)
    assert listing(handler, "new") == sorted(expected)
    for name, data in expected.items():
        assert stored(handler, name) == data
    assert listing(handler, "tmp") == []


async def test_worker_threads_are_bounded_by_max_threads(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_threads=2, at most two deliveries are inside their worker thread at once.

    The file fsync blocks until the test lets it go, so each delivery parks inside its thread;
    the test waits (without sleeping) until two have arrived and every task is blocked, then
    checks that the rest are queued on the limiter rather than running, lets one delivery
    finish, and repeats.
    """
    handler = await prepared(tmp_path, max_threads=2)
    messages = [await spool.small([b"body %d\r\n" % n], queue_id=f"Q{n}") for n in range(6)]
    real_fsync = os.fsync
    lock = threading.Lock()
    inside = peak = 0
    gate = threading.Semaphore(0)
    arrived_send, arrived = trio.open_memory_channel[int](len(messages))

    def blocking_fsync(fd: int) -> None:
        nonlocal inside, peak
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            real_fsync(fd)
            return
        with lock:
            inside += 1
            peak = max(peak, inside)
        trio.from_thread.run_sync(arrived_send.send_nowait, fd)
        gate.acquire()
        with lock:
            inside -= 1
        real_fsync(fd)

    monkeypatch.setattr(OS + "fsync", blocking_fsync)
    # Private access: the limiter is how the bound is enforced, and its statistics are the
    # only way to see, without waiting for something not to happen, that the others queue.
    limiter = handler._limiter
    names: list[str] = []
    finished_send, finished = trio.open_memory_channel[str](len(messages))

    async def one(message: Message) -> None:
        name = await deliver(handler, message)
        names.append(name)
        finished_send.send_nowait(name)

    async with trio.open_nursery() as nursery:
        for message in messages:
            nursery.start_soon(one, message)
        try:
            # A safety net, not a wait: every step is driven by events.
            with trio.fail_after(60):
                parked = 0
                for done in range(len(messages)):
                    remaining = len(messages) - done
                    running = min(2, remaining)
                    while parked < running:
                        await arrived.receive()
                        parked += 1
                    await trio.testing.wait_all_tasks_blocked()
                    statistics = limiter.statistics()
                    assert inside == running
                    assert statistics.borrowed_tokens == running
                    assert statistics.tasks_waiting == remaining - running
                    gate.release()  # one delivery may finish; the next one may start
                    parked -= 1
                    await finished.receive()  # its thread is done and its token returned
        finally:
            for _ in messages:
                gate.release()  # never leave a worker thread parked if an assertion failed
    assert peak == 2
    assert len(set(names)) == len(messages)
    assert listing(handler, "new") == sorted(names)


# -- unix_newlines ------------------------------------------------------------------------------

UNIX_BODY = b"Subject: lf\r\n\r\nline one\r\n\r\n.dot\r\n" + b"x" * 40 + b"\r\nend\r\n"


@pytest.mark.parametrize("cut", range(len(UNIX_BODY) + 1))
def test_unix_newlines_converter_handles_every_split(cut: int) -> None:
    for second_cut in (cut, min(cut + 1, len(UNIX_BODY)), len(UNIX_BODY)):
        convert = UnixNewlines()
        pieces = (UNIX_BODY[:cut], UNIX_BODY[cut:second_cut], UNIX_BODY[second_cut:])
        assert b"".join(convert(piece) for piece in pieces) == UNIX_BODY.replace(b"\r\n", b"\n")


async def test_unix_newlines_in_memory_chunks_split_inside_crlf(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path, unix_newlines=True)
    expected = TRACE.replace(b"\r\n", b"\n") + UNIX_BODY.replace(b"\r\n", b"\n")
    crs = [index for index, byte in enumerate(UNIX_BODY) if byte == ord("\r")]
    for cr in crs:
        # Split right after the CR, and also deliver a lone "\r" and a lone "\n" chunk.
        for chunks in (
            [UNIX_BODY[: cr + 1], UNIX_BODY[cr + 1 :]],
            [UNIX_BODY[:cr], b"\r", b"\n", UNIX_BODY[cr + 2 :]],
        ):
            name = await deliver(handler, await spool.small(chunks))
            assert stored(handler, name) == expected


async def test_unix_newlines_spooled_crlf_split_across_reads(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    copy_chunk = 7
    monkeypatch.setattr(maildir_module, "COPY_CHUNK", copy_chunk)
    handler = await prepared(tmp_path, unix_newlines=True)
    chunks = [b"line %d\r\n" % number for number in range(300)]
    body = b"".join(chunks)
    # Some CRLF really straddles a read boundary: the CR ends one read, the LF starts the next.
    assert any(body[index : index + 2] == b"\r\n" for index in range(6, len(body), copy_chunk))
    message = await spool.large(chunks)
    name = await deliver(handler, message)
    data = stored(handler, name)
    assert data == TRACE.replace(b"\r\n", b"\n") + body.replace(b"\r\n", b"\n")
    assert b"\r" not in data


async def test_unix_newlines_crlf_split_at_the_real_copy_chunk(
    tmp_path: Path, spool: MessageFactory
) -> None:
    handler = await prepared(tmp_path, unix_newlines=True)
    line = b"y" * 98 + b"\r\n"
    lines, rest = divmod(COPY_CHUNK - 1, len(line))
    body = line * lines + b"z" * rest + b"\r\n" + line * 10
    assert body[COPY_CHUNK - 1 : COPY_CHUNK + 1] == b"\r\n"
    message = spool.new()
    for start in range(0, len(body), 65_536):
        await message.write(body[start : start + 65_536])
    await message.seal()
    name = await deliver(handler, message)
    assert stored(handler, name) == TRACE.replace(b"\r\n", b"\n") + body.replace(b"\r\n", b"\n")


async def test_unix_newlines_empty_content(tmp_path: Path, spool: MessageFactory) -> None:
    handler = await prepared(tmp_path, unix_newlines=True)
    name = await deliver(handler, await spool.build())
    assert stored(handler, name) == TRACE.replace(b"\r\n", b"\n")
