"""The Trio floor (benchmarks/floor.py) must be a correct, if minimal, SMTP responder.

It is the ceiling every trimail number is read against, so a floor that ended a message at
the wrong place, or answered pipelined commands out of order, would make the benchmark lie.
"""

from __future__ import annotations

import pytest
import trio
import trio.testing

from tests.benchmarks.scripts import load_script
from trimail.server.streams import LeanSocketStream

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


async def test_on_trimails_socket_layer_over_loopback_it_answers_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    served_on: list[type] = []
    serve_client = floor.serve_client

    async def spy(stream: trio.abc.Stream, *, validate: bool = False) -> None:
        served_on.append(type(stream))
        await serve_client(stream, validate=validate)

    monkeypatch.setattr(floor, "serve_client", spy)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    async with trio.open_nursery() as nursery, listeners[0]:
        client = await trio.open_tcp_stream("127.0.0.1", port)
        handler = floor.client_handler(validate=False, lean_socket=True)  # what serve() runs
        nursery.start_soon(handler, await listeners[0].accept())
        await client.send_all(SESSION)
        received = b""
        with trio.fail_after(5):
            while chunk := await client.receive_some(65536):
                received += chunk
        await client.aclose()
    assert received == floor.GREETING + EXPECTED
    assert served_on == [LeanSocketStream]


# -- --validate: trimail's parser and decoder in the floor -------------------------------------

# The same session as SESSION but with a valid body: the plain floor's BODY holds bare LFs,
# which the decoder (rightly) refuses.
VALID_BODY = b"Subject: x\r\n\r\n..stuffed line\r\n.not the end\r\n"
VALID_SESSION = SESSION.replace(BODY, VALID_BODY)


def _validated(chunks: list[bytes]) -> tuple[bytes, int, int, bool]:
    session = floor.FloorSession(validate=True)
    replies = b"".join(session.feed(chunk) for chunk in chunks)
    return replies, session.messages, session.rejected, session.closed


def test_validating_a_good_session_answers_as_the_plain_floor_does() -> None:
    assert _validated([VALID_SESSION]) == (EXPECTED, 2, 0, True)


def test_validating_every_split_into_two_reads_gives_the_same_replies() -> None:
    for cut in range(1, len(VALID_SESSION)):
        chunks = [VALID_SESSION[:cut], VALID_SESSION[cut:]]
        assert _validated(chunks) == (EXPECTED, 2, 0, True), cut


def test_validating_rejects_a_body_with_bare_newlines_and_reads_to_its_real_end() -> None:
    # The plain floor's BODY holds "bare\n.\n": rejected, and its fake terminator ends nothing.
    replies, messages, rejected, closed = _validated([SESSION])
    assert replies == EXPECTED.replace(floor.QUEUED_REPLY, floor.REJECTED_REPLY, 1)
    assert (messages, rejected, closed) == (1, 1, True)


def test_validating_refuses_a_command_trimail_refuses() -> None:
    replies, *_ = _validated([b"MAIL FROM:<no closing bracket\r\nNOOP\r\n"])
    assert replies == floor.BAD_COMMAND_REPLY + floor.OK_REPLY


def test_the_plain_floor_answers_any_line_without_parsing_it() -> None:
    assert _replies([b"MAIL FROM:<no closing bracket\r\n\r\n"]) == (floor.OK_REPLY * 2, 0, False)
