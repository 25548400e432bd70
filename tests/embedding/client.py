"""A raw SMTP client over a trio stream, for tests that may use only trimail's public API."""

from __future__ import annotations

import trio


class Client:
    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self._buffer = b""

    @classmethod
    async def connect(cls, port: int) -> Client:
        return cls(await trio.open_tcp_stream("127.0.0.1", port))

    async def reply(self) -> tuple[int, str]:
        """The next whole reply: its code and its last line's text."""
        while True:
            lines = self._buffer.split(b"\r\n")
            for index, line in enumerate(lines[:-1]):
                if line[3:4] == b" ":
                    consumed = b"\r\n".join(lines[: index + 1]) + b"\r\n"
                    self._buffer = self._buffer[len(consumed) :]
                    return int(line[:3]), line[4:].decode()
            data = await self.stream.receive_some(65536)
            if not data:
                raise EOFError(f"closed; unread {self._buffer!r}")
            self._buffer += data

    async def command(self, line: str) -> tuple[int, str]:
        await self.stream.send_all(line.encode() + b"\r\n")
        return await self.reply()

    async def send_message(
        self, sender: str, recipients: list[str], content: bytes
    ) -> tuple[int, str]:
        """EHLO, MAIL, RCPT..., DATA; returns the reply to the end of data."""
        for line in ("EHLO client.test", f"MAIL FROM:<{sender}>"):
            code, text = await self.command(line)
            if code != 250:
                return code, text
        for recipient in recipients:
            code, text = await self.command(f"RCPT TO:<{recipient}>")
            if code != 250:
                return code, text
        code, text = await self.command("DATA")
        if code != 354:
            return code, text
        await self.stream.send_all(content + b".\r\n")
        return await self.reply()

    async def aclose(self) -> None:
        await trio.aclose_forcefully(self.stream)
