"""benchmarks/session_alone.py must measure whole messages: every scripted message accepted."""

from __future__ import annotations

import pytest

from tests.benchmarks.scripts import load_script

session_alone = load_script("session_alone")


@pytest.mark.parametrize("size", [1024, 102_400])
async def test_every_scripted_message_is_accepted(size: int) -> None:
    # measure() exits with a message unless the session accepted all of them.
    per_message = await session_alone.measure(7, size)
    assert per_message > 0


def test_the_body_has_the_asked_size_and_one_terminator() -> None:
    body = session_alone.body(102_400)
    assert abs(len(body) - 102_400) < len(session_alone.LINE) + 3
    assert body.endswith(b"\r\n.\r\n") and body.count(b"\r\n.\r\n") == 1


@pytest.mark.parametrize("validate", [False, True])
@pytest.mark.parametrize("size", [1024, 102_400])
async def test_the_floors_accept_every_scripted_message_too(validate: bool, size: int) -> None:
    per_message = await session_alone.measure_floor(7, size, validate=validate)
    assert per_message > 0


@pytest.mark.parametrize("read_size", [1, 1000, 65_536])
async def test_a_message_cut_into_reads_is_accepted_whole(read_size: int) -> None:
    per_message = await session_alone.measure(5, 102_400, read_size)
    assert per_message > 0
    per_message = await session_alone.measure_floor(5, 102_400, validate=True, read_size=read_size)
    assert per_message > 0


async def test_the_scripted_stream_cuts_the_message_as_asked() -> None:
    stream = session_alone.ScriptedStream(1, b"x" * 10 + b"\r\n.\r\n", read_size=4)
    got = []
    while data := await stream.receive_some():
        got.append(data)
    assert got[0] == b"EHLO bench.test\r\n"
    assert got[1] == session_alone.COMMANDS
    assert got[2:-1] == [b"xxxx", b"xxxx", b"xx\r\n", b".\r\n"]
    assert got[-1] == b"QUIT\r\n"
