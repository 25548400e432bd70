"""A tiny scripted SMTP responder for bench tests: slow, failing or rude on purpose.

It understands just enough SMTP for a bench client (EHLO, STARTTLS refused, MAIL, RCPT, DATA,
RSET, QUIT), answers each command as soon as its line arrives, and misbehaves as its
``Behaviour`` says. It runs over any Trio stream: memory streams under a MockClock (so a
"200 ms" delay costs no wall time and latencies are exact) or TCP on 127.0.0.1.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs
import trio
import trio.testing

from trimail.bench.client import Connector


@attrs.frozen(kw_only=True)
class Behaviour:
    pipelining: bool = True
    #: Answer every n-th MAIL (counted across sessions) with 451 4.3.0.
    fail_every_nth_mail: int = 0
    #: Seconds to wait before the 250 after DATA: message k (across sessions, in order of
    #: arrival) waits ``data_delays[k % len]``.
    data_delays: Sequence[float] = ()
    #: Close the connection without a reply on the n-th MAIL (counted across sessions).
    drop_on_nth_mail: int = 0
    #: Seconds to wait before the 354 (a server that stalls every transaction).
    data_command_delay: float = 0.0
    #: Answer the n-th MAIL (across sessions) with 421 4.3.2 and close.
    close_on_nth_mail: int = 0


class FakeSmtpServer:
    """One behaviour, any number of sessions; counts what it saw."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.mails = 0
        self.messages = 0
        self.sessions = 0

    async def handle(self, stream: trio.abc.Stream) -> None:
        self.sessions += 1
        try:
            await self._converse(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await trio.aclose_forcefully(stream)

    async def _converse(self, stream: trio.abc.Stream) -> None:
        behaviour = self.behaviour
        buffer = bytearray()

        async def line() -> bytes | None:
            while True:
                end = buffer.find(b"\r\n")
                if end >= 0:
                    text = bytes(buffer[:end])
                    del buffer[: end + 2]
                    return text
                data = await stream.receive_some(65536)
                if not data:
                    return None
                buffer.extend(data)

        async def body() -> bool:
            while True:
                end = buffer.find(b"\r\n.\r\n")
                if end >= 0:
                    del buffer[: end + 5]
                    return True
                if buffer.startswith(b".\r\n"):  # an empty message: the terminator alone
                    del buffer[:3]
                    return True
                data = await stream.receive_some(65536)
                if not data:
                    return False
                buffer.extend(data)

        in_transaction = False
        await stream.send_all(b"220 fake.test ESMTP\r\n")
        while (command := await line()) is not None:
            verb = command[:4].upper()
            if verb == b"EHLO":
                extensions = b"250-PIPELINING\r\n" if behaviour.pipelining else b""
                await stream.send_all(b"250-fake.test\r\n" + extensions + b"250 SIZE 1000000\r\n")
            elif verb == b"MAIL":
                self.mails += 1
                if behaviour.drop_on_nth_mail and self.mails % behaviour.drop_on_nth_mail == 0:
                    return
                if behaviour.close_on_nth_mail and self.mails % behaviour.close_on_nth_mail == 0:
                    await stream.send_all(b"421 4.3.2 closing\r\n")
                    return
                nth = behaviour.fail_every_nth_mail
                in_transaction = not (nth and self.mails % nth == 0)
                if in_transaction:
                    await stream.send_all(b"250 2.1.0 OK\r\n")
                else:
                    await stream.send_all(b"451 4.3.0 try again\r\n")
            elif verb == b"RCPT":
                if in_transaction:
                    await stream.send_all(b"250 2.1.5 OK\r\n")
                else:
                    await stream.send_all(b"503 5.5.1 need MAIL\r\n")
            elif verb == b"DATA":
                if not in_transaction:
                    await stream.send_all(b"503 5.5.1 need RCPT\r\n")
                    continue
                if behaviour.data_command_delay:
                    await trio.sleep(behaviour.data_command_delay)
                await stream.send_all(b"354 go ahead\r\n")
                if not await body():
                    return
                in_transaction = False
                index = self.messages
                self.messages += 1
                if behaviour.data_delays:
                    await trio.sleep(behaviour.data_delays[index % len(behaviour.data_delays)])
                await stream.send_all(b"250 2.0.0 OK\r\n")
            elif verb == b"RSET":
                in_transaction = False
                await stream.send_all(b"250 2.0.0 OK\r\n")
            elif verb == b"QUIT":
                await stream.send_all(b"221 2.0.0 bye\r\n")
                return
            else:
                await stream.send_all(b"502 5.5.2 unknown\r\n")


def memory_connector(server: FakeSmtpServer, nursery: trio.Nursery) -> Connector:
    """Each connection is a memory stream pair whose server end runs in ``nursery``."""

    async def connect() -> trio.abc.Stream:
        client, server_end = trio.testing.memory_stream_pair()
        nursery.start_soon(server.handle, server_end)
        return client

    return connect
