"""A pytest plugin (entry point ``trimail``): a real SMTP server inside your pytest-trio tests.

Install trimail and pytest-trio, then in any trio test::

    async def test_signup_sends_a_welcome_mail(trimail_server):
        await my_app.signup("bob@example.org", smtp_port=trimail_server.port)
        message = await trimail_server.inbox.wait_for(
            lambda m: "bob@example.org" in map(str, m.envelope.recipients), timeout=5
        )
        assert b"Welcome" in message.content

The server listens on 127.0.0.1 on a free port, keeps every message in memory
(``trimail_server.inbox`` is a ``MemoryHandler``) and stops when the test ends.
"""

from __future__ import annotations

import attrs
import pytest
import trio

from .config.model import ListenAddress, ServerConfig, Timeouts
from .delivery.memory import MemoryHandler
from .server.serve import serve

#: Loopback only, a fixed name (no DNS lookup), and a short grace so a finished test does not
#: wait long for a client it left in the middle of DATA.
_TEST_CONFIG = ServerConfig(
    listen=(ListenAddress("127.0.0.1", 0),),
    hostname="trimail.test",
    timeouts=Timeouts(shutdown_grace=2.0),
)


@attrs.frozen
class RunningServer:
    host: str
    port: int
    #: Every message the server accepted, with ``wait_for(predicate, timeout=...)``.
    inbox: MemoryHandler

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)


async def start_test_server(
    nursery: trio.Nursery, config: ServerConfig = _TEST_CONFIG
) -> RunningServer:
    """Start a server in ``nursery`` (for tests that want their own config)."""
    inbox = MemoryHandler()
    addresses: list[ListenAddress] = await nursery.start(serve, config, inbox)
    bound = addresses[0]
    return RunningServer(bound.host, bound.port, inbox)


@pytest.fixture
async def trimail_server(nursery: trio.Nursery) -> RunningServer:
    """An in-process trimail on 127.0.0.1 and a free port, for the length of one test."""
    return await start_test_server(nursery)
