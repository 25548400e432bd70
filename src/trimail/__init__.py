"""trimail: a hardened SMTP receiver on Trio, as a server and as a library.

Embed it in a Trio program::

    import trio
    import trimail

    class Inbox(trimail.BaseHandler):
        async def on_rcpt(self, session, recipient):
            if recipient.domain != "example.org":
                return trimail.Reply(550, "5.1.1", ("No such user here",))
            return None

        async def deliver(self, envelope, message):
            print(envelope.sender, "->", envelope.recipients, message.size, "bytes")
            return message.queue_id

    async def main():
        config = trimail.ServerConfig(listen=(trimail.ListenAddress("127.0.0.1", 0),))
        async with trio.open_nursery() as nursery:
            addresses = await nursery.start(trimail.serve, config, Inbox())
            print("listening on", addresses[0])

``serve`` runs until its nursery is cancelled, then stops gracefully. ``Handler`` documents
every hook; ``MaildirHandler``, ``MemoryHandler`` and ``DiscardHandler`` are ready-made ones.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .config.model import AdmissionConfig as AdmissionConfig
    from .config.model import DeliveryConfig as DeliveryConfig
    from .config.model import ListenAddress as ListenAddress
    from .config.model import ProxyConfig as ProxyConfig
    from .config.model import Rate as Rate
    from .config.model import ServerConfig as ServerConfig
    from .config.model import Timeouts as Timeouts
    from .config.model import TlsConfig as TlsConfig
    from .delivery.maildir import MaildirHandler as MaildirHandler
    from .delivery.memory import MemoryHandler as MemoryHandler
    from .delivery.memory import StoredMessage as StoredMessage
    from .delivery.message import Message as Message
    from .delivery.null import DiscardHandler as DiscardHandler
    from .handler import BaseHandler as BaseHandler
    from .handler import DeliveryError as DeliveryError
    from .handler import Handler as Handler
    from .handler import Receipt as Receipt
    from .handler import SessionInfo as SessionInfo
    from .peer import Peer as Peer
    from .protocol.addresses import Mailbox as Mailbox
    from .protocol.envelope import Envelope as Envelope
    from .protocol.envelope import TlsInfo as TlsInfo
    from .protocol.esmtp_params import MailParams as MailParams
    from .protocol.limits import ProtocolLimits as ProtocolLimits
    from .protocol.replies import Reply as Reply
    from .server.serve import Server as Server
    from .server.serve import serve as serve

#: Public name -> module. Loaded on first use (PEP 562), so importing the sans-I/O core
#: (``trimail.protocol``) never drags in trio through this package's ``__init__``.
_EXPORTS = {
    "AdmissionConfig": "trimail.config.model",
    "DeliveryConfig": "trimail.config.model",
    "ListenAddress": "trimail.config.model",
    "ProxyConfig": "trimail.config.model",
    "Rate": "trimail.config.model",
    "ServerConfig": "trimail.config.model",
    "Timeouts": "trimail.config.model",
    "TlsConfig": "trimail.config.model",
    "MaildirHandler": "trimail.delivery.maildir",
    "MemoryHandler": "trimail.delivery.memory",
    "StoredMessage": "trimail.delivery.memory",
    "Message": "trimail.delivery.message",
    "DiscardHandler": "trimail.delivery.null",
    "BaseHandler": "trimail.handler",
    "DeliveryError": "trimail.handler",
    "Handler": "trimail.handler",
    "Receipt": "trimail.handler",
    "SessionInfo": "trimail.handler",
    "Peer": "trimail.peer",
    "Mailbox": "trimail.protocol.addresses",
    "Envelope": "trimail.protocol.envelope",
    "TlsInfo": "trimail.protocol.envelope",
    "MailParams": "trimail.protocol.esmtp_params",
    "ProtocolLimits": "trimail.protocol.limits",
    "Reply": "trimail.protocol.replies",
    "Server": "trimail.server.serve",
    "serve": "trimail.server.serve",
}
__all__ = [
    "AdmissionConfig",
    "BaseHandler",
    "DeliveryConfig",
    "DeliveryError",
    "DiscardHandler",
    "Envelope",
    "Handler",
    "ListenAddress",
    "MailParams",
    "Mailbox",
    "MaildirHandler",
    "MemoryHandler",
    "Message",
    "Peer",
    "ProtocolLimits",
    "ProxyConfig",
    "Rate",
    "Receipt",
    "Reply",
    "Server",
    "ServerConfig",
    "SessionInfo",
    "StoredMessage",
    "Timeouts",
    "TlsConfig",
    "TlsInfo",
    "serve",
]


def __getattr__(name: str) -> object:
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'trimail' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


assert sorted(__all__) == sorted(_EXPORTS)


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
