"""Every built-in store is a Handler: statically (the annotated assignments below are checked by
mypy --strict) and at run time (the session hooks accept everything)."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimail.delivery.maildir import MaildirHandler
from trimail.delivery.memory import MemoryHandler
from trimail.delivery.null import DiscardHandler
from trimail.handler import BaseHandler, Handler, SessionInfo

from .messages import ALICE, BOB, PEER, MessageFactory, make_envelope


def built_in_handlers(root: Path) -> list[Handler]:
    maildir: Handler = MaildirHandler(root, large_threads=4, unix_newlines=True)
    memory: Handler = MemoryHandler()
    discard: Handler = DiscardHandler()
    base: Handler = BaseHandler()
    return [maildir, memory, discard, base]


async def test_built_in_handlers_accept_every_session(tmp_path: Path) -> None:
    session = SessionInfo(peer=PEER, client_name="client.test", tls=None)
    for handler in built_in_handlers(tmp_path / "Maildir"):
        await handler.prepare()
        assert await handler.on_connect(PEER) is None
        assert await handler.on_mail(session, ALICE) is None
        assert await handler.on_mail(session, None) is None  # the null sender <>
        rcpt_session = SessionInfo(peer=PEER, client_name="client.test", tls=None, sender=ALICE)
        assert await handler.on_rcpt(rcpt_session, BOB) is None


async def test_base_handler_must_be_given_a_deliver(spool: MessageFactory) -> None:
    class Incomplete(BaseHandler):
        pass

    with pytest.raises(NotImplementedError, match="Incomplete must implement deliver"):
        await Incomplete().deliver(make_envelope(), await spool.small([b"body\r\n"]))
