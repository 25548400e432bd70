"""The handler protocol: how an application decides about sessions and takes delivery of mail.

One small typed protocol for everything behind the SMTP session. The server calls
``on_connect`` before greeting a client, ``on_mail`` and ``on_rcpt`` for each MAIL and RCPT it
would accept, and ``deliver`` once a whole message has arrived; it answers 250 only after
``deliver`` returned a receipt. Every hook may refuse with a ``Reply`` (a 4xx or 5xx such as
``Reply(550, "5.1.1", ("No such user",))``); a hook that raises or takes longer than
``timeouts.handler`` is answered 451 4.3.0 (421 for ``on_connect``) and logged, so a bug in an
application never crashes the server or loses a message silently.

The built-in Maildir, in-memory and discard stores are handlers too; subclass ``BaseHandler``
to override only what you need.
"""

from __future__ import annotations

from typing import Protocol

import attrs

from .delivery.message import Message
from .peer import Peer
from .protocol.addresses import Mailbox
from .protocol.envelope import Envelope, TlsInfo
from .protocol.replies import Reply


@attrs.frozen(kw_only=True)
class SessionInfo:
    """What is known about a session when ``on_mail`` or ``on_rcpt`` is asked."""

    peer: Peer
    #: The name given in HELO/EHLO (unverified).
    client_name: str
    #: The TLS session, or None on a plain connection.
    tls: TlsInfo | None
    #: The sender of the transaction in progress (``on_rcpt`` only; None for ``<>`` or
    #: when asked from ``on_mail``).
    sender: Mailbox | None = None


class DeliveryError(Exception):
    """Raised by ``deliver`` when the message could not be stored: the client gets 451 4.3.0
    and will retry, and nothing of the message may remain visible."""


#: What ``deliver`` returns: a receipt for the log (a file name, an id in another system), or
#: a Reply to refuse the message (e.g. 554 5.7.1 from a content filter).
Receipt = str


class Handler(Protocol):
    async def prepare(self) -> None:
        """Get ready before the first session (create directories, open connections)."""

    async def on_connect(self, peer: Peer) -> Reply | None:
        """None greets the client; a Reply is said instead of the greeting and the
        connection is closed (e.g. 554 5.7.1 for a blocked network)."""

    async def on_mail(self, session: SessionInfo, sender: Mailbox | None) -> Reply | None:
        """None accepts MAIL (``sender`` None is the null reverse path ``<>``)."""

    async def on_rcpt(self, session: SessionInfo, recipient: Mailbox) -> Reply | None:
        """None accepts the recipient; e.g. ``Reply(550, "5.1.1", ("No such user",))``."""

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        """Store or hand on the message and return a receipt once it is safe: the client is
        told 250 only then. ``message`` is spooled (in memory when small, in a temporary file
        when large); read it with ``message.chunks()`` or ``message.read()`` before returning,
        as it is discarded afterwards. Raise DeliveryError (or return a 4xx Reply) to have the
        client retry later.

        ``deliver`` is shielded from a server's shutdown and cancelled when it takes longer
        than ``timeouts.handler``. Under a running server that limit is kept by the server's
        deadline watch, not by a Trio deadline, so ``trio.current_effective_deadline()`` here
        does not show it: a handler that budgets a backend call should take the limit from
        its own configuration."""


def overrides(handler: Handler, hook: str) -> bool:
    """True unless ``hook`` is BaseHandler's accept-everything default, which the server can
    then skip calling (a saving on every command for handlers that only implement deliver)."""
    default = getattr(BaseHandler, hook)
    return getattr(type(handler), hook, None) is not default


class BaseHandler:
    """Accepts every session, sender and recipient; subclasses override what they need and
    must implement ``deliver``."""

    async def prepare(self) -> None:
        return None

    async def on_connect(self, peer: Peer) -> Reply | None:
        return None

    async def on_mail(self, session: SessionInfo, sender: Mailbox | None) -> Reply | None:
        return None

    async def on_rcpt(self, session: SessionInfo, recipient: Mailbox) -> Reply | None:
        return None

    async def deliver(self, envelope: Envelope, message: Message) -> Receipt | Reply:
        raise NotImplementedError(f"{type(self).__name__} must implement deliver()")
