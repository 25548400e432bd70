"""The Trio floor (benchmarks/floor.py) must be a correct, if minimal, SMTP responder.

It is the ceiling every trimail number is read against, so a floor that ended a message at
the wrong place, or answered pipelined commands out of order, would make the benchmark lie.
"""

from __future__ import annotations

import trio
import trio.testing

from tests.benchmarks.scripts import load_script

floor = load_script("floor")

BODY = b"Subject: x\r\n\r\n..stuffed line\r\n.not the end\r\nbare\n.\nstill body\r\n"
SESSION = (
    b"EHLO client.test\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n"
    + BODY
    + b".\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n.\r\nQUIT\r\n"
)
EXPECTED = (
    floor.EHLO_REPLY
    + floor.OK_REPLY * 2
    + floor.DATA_REPLY
    + floor.QUEUED_REPLY
    + floor.OK_REPLY * 2
    + floor.DATA_REPLY
    + floor.QUEUED_REPLY
    + floor.BYE_REPLY
)


def _replies(chunks: list[bytes]) -> tuple[bytes, int, bool]:
    session = floor.FloorSession()
    replies = b"".join(session.feed(chunk) for chunk in chunks)
    messages: int = session.messages
    closed: bool = session.closed
    return replies, messages, closed


def test_a_pipelined_session_in_one_read_is_answered_in_order() -> None:
    assert _replies([SESSION]) == (EXPECTED, 2, True)


def test_every_split_into_two_reads_gives_the_same_replies() -> None:
    for cut in range(1, len(SESSION)):
        assert _replies([SESSION[:cut], SESSION[cut:]]) == (EXPECTED, 2, True), cut


def test_byte_by_byte_gives_the_same_replies() -> None:
    assert _replies([SESSION[i : i + 1] for i in range(len(SESSION))]) == (EXPECTED, 2, True)


def test_a_lone_lf_dot_lf_does_not_end_the_message() -> None:
    replies, messages, _ = _replies([b"DATA\r\nbody\n.\nmore\r\n"])
    assert (replies, messages) == (floor.DATA_REPLY, 0)


async def test_over_a_stream_the_greeting_comes_first_and_quit_closes() -> None:
    client, server = trio.testing.memory_stream_pair()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(floor.serve_client, server)
        await client.send_all(SESSION)
        received = b""
        with trio.fail_after(5):
            while chunk := await client.receive_some(65536):
                received += chunk
    assert received == floor.GREETING + EXPECTED
