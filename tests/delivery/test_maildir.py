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


@pytest.fixture
def python_steps(monkeypatch: pytest.MonkeyPatch) -> None:
    """The small batches' steps in Python: the tests using this spy on or break ``os``
    functions, which the C module's version never calls (test_maildir_c.py breaks that one
    on a real disk instead)."""
    monkeypatch.setattr(maildir_module, "_store_batch_in_c", None)


def listing(handler: MaildirHandler, sub: str) -> list[str]:
    return sorted(os.listdir(handler.root / sub))


def stored(handler: MaildirHandler, name: str) -> bytes:
    return (handler.root / "new" / name).read_bytes()


async def prepared(
    root: Path, *, large_threads: int = 2, unix_newlines: bool = False
) -> MaildirHandler:
    handler = MaildirHandler(
        root / "Maildir", large_threads=large_threads, unix_newlines=unix_newlines
    )
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


@pytest.mark.usefixtures("python_steps")
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


@pytest.mark.usefixtures("python_steps")
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
    handler = await prepared(tmp_path, large_threads=1)
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


class DirectoryFsyncGate:
    """Holds every fsync of a directory until the test lets it go, and tells the test when
    one has arrived: the moment a batch's files are renamed but not yet durable."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self._gate = threading.Semaphore(0)
        self.arrived_send, self.arrived = trio.open_memory_channel[int](100)
        token = trio.lowlevel.current_trio_token()  # the fsync runs in a plain worker thread
        real_fsync = os.fsync

        def gated_fsync(fd: int) -> None:
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                trio.from_thread.run_sync(self.arrived_send.send_nowait, fd, trio_token=token)
                self._gate.acquire(timeout=30)  # a safety net, never a wait
            real_fsync(fd)

        monkeypatch.setattr(OS + "fsync", gated_fsync)

    def release(self, count: int = 1) -> None:
        for _ in range(count):
            self._gate.release()


@pytest.mark.usefixtures("python_steps")
async def test_small_messages_arriving_during_a_batch_share_one_directory_fsync(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One small-message batch at a time: while the first message waits for its directory
    fsync, five more queue (nothing of theirs touches the disk yet), then all five are written
    as one batch with one directory fsync. No delivery returns before its batch's fsync."""
    handler = await prepared(tmp_path)
    small_lane, _large_lane = handler.lanes
    gate = DirectoryFsyncGate(monkeypatch)
    messages = [await spool.small([b"body %d\r\n" % n], queue_id=f"Q{n}") for n in range(6)]
    returned: list[str] = []

    async def one(message: Message) -> None:
        returned.append(await deliver(handler, message))

    try:
        with trio.fail_after(30):  # a safety net: every step below waits for an event
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, messages[0])
                await gate.arrived.receive()
                for message in messages[1:]:
                    nursery.start_soon(one, message)
                await trio.testing.wait_all_tasks_blocked()
                # The first file is renamed into new/ but not durable: not acknowledged yet.
                assert len(listing(handler, "new")) == 1
                assert listing(handler, "tmp") == []  # the others have not started
                assert returned == []
                assert small_lane.in_flight == 1
                gate.release()
                await gate.arrived.receive()  # the second batch reached its directory fsync
                await trio.testing.wait_all_tasks_blocked()
                assert len(returned) == 1
                assert len(listing(handler, "new")) == 6
                gate.release()
    finally:
        gate.release(10)  # never leave a worker thread parked if an assertion failed
    assert (small_lane.batches, small_lane.jobs) == (2, 6)
    assert listing(handler, "new") == sorted(returned)
    for number, name in enumerate(sorted(returned, key=lambda name: name.split("_Q")[1])):
        assert stored(handler, name) == TRACE + b"body %d\r\n" % number


@pytest.mark.usefixtures("python_steps")
async def test_one_failed_file_in_a_batch_fails_only_its_own_delivery(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = await prepared(tmp_path)
    gate = DirectoryFsyncGate(monkeypatch)
    real_write = os.write

    def write_failing_for_q2(fd: int, data: bytes | memoryview) -> int:
        if b"body 2" in bytes(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(OS + "write", write_failing_for_q2)
    outcomes: dict[int, str | DeliveryError] = {}

    async def one(number: int) -> None:
        message = await spool.small([b"body %d\r\n" % number], queue_id=f"Q{number}")
        try:
            outcomes[number] = await deliver(handler, message)
        except DeliveryError as exc:
            outcomes[number] = exc

    try:
        with trio.fail_after(30):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(one, 0)
                await gate.arrived.receive()
                for number in (1, 2, 3):
                    nursery.start_soon(one, number)
                await trio.testing.wait_all_tasks_blocked()
                gate.release()
                await gate.arrived.receive()  # 1, 2 and 3 in one batch
                gate.release()
    finally:
        gate.release(10)
    assert handler.lanes[0].batches == 2
    assert isinstance(outcomes[2], DeliveryError)
    assert "No space left" in str(outcomes[2])
    kept = [outcomes[number] for number in (0, 1, 3)]
    assert listing(handler, "new") == sorted(str(name) for name in kept)
    assert listing(handler, "tmp") == []


@pytest.mark.usefixtures("python_steps")
async def test_a_failed_directory_fsync_fails_the_whole_batch_and_leaves_nothing(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = await prepared(tmp_path)
    jobs = [
        maildir_module._StoreJob(f"name{n}", b"content %d" % n, None, maildir_module._identity)
        for n in range(3)
    ]
    real_fsync = os.fsync

    def failing_directory_fsync(fd: int) -> None:
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EIO, "Input/output error")
        real_fsync(fd)

    monkeypatch.setattr(OS + "fsync", failing_directory_fsync)
    outcomes = await trio.to_thread.run_sync(handler._store_batch, jobs)
    assert [str(outcome) for outcome in outcomes] == ["[Errno 5] Input/output error"] * 3
    assert listing(handler, "new") == []
    assert listing(handler, "tmp") == []


@pytest.mark.usefixtures("python_steps")
async def test_writeback_of_every_file_starts_before_the_first_fsync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    handler = await prepared(tmp_path)
    events: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        kind = "directory" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    monkeypatch.setattr(OS + "fsync", recording_fsync)
    monkeypatch.setattr(maildir_module, "start_writeback", lambda fd: events.append("writeback"))
    jobs = [
        maildir_module._StoreJob(f"name{n}", b"content %d" % n, None, maildir_module._identity)
        for n in range(3)
    ]
    outcomes = await trio.to_thread.run_sync(handler._store_batch, jobs)
    assert outcomes == ["name0", "name1", "name2"]
    assert events == ["writeback"] * 3 + ["fsync file"] * 3 + ["fsync directory"]
    assert {name: stored(handler, name) for name in ("name0", "name1", "name2")} == {
        f"name{n}": b"content %d" % n for n in range(3)
    }


async def test_large_messages_have_their_own_lane(
    tmp_path: Path, spool: MessageFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A large message copied from its spool file never holds up the small ones."""
    handler = await prepared(tmp_path)
    small_lane, large_lane = handler.lanes
    await deliver(handler, await spool.large(large_chunks()))
    await deliver(handler, await spool.small([b"small\r\n"]))
    assert (large_lane.jobs, small_lane.jobs) == (1, 1)


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


def test_a_forked_child_names_its_files_with_its_own_pid(tmp_path: Path) -> None:
    # --workers starts fresh interpreters, but an embedding application may fork: the cached
    # pid must follow, or two processes could pick the same name.
    handler = MaildirHandler(tmp_path)
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover  (the child reports through the pipe)
        os.write(writer, handler.unique_name(QUEUE_ID).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        name = pipe.read().decode()
    os.waitpid(child, 0)
    assert f"P{child}Q" in name
    assert f"P{os.getpid()}Q" in handler.unique_name(QUEUE_ID)
