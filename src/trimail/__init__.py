"""trimail: a hardened SMTP receiver on Trio."""

from .protocol.addresses import Mailbox as Mailbox
from .protocol.envelope import Envelope as Envelope
from .protocol.limits import ProtocolLimits as ProtocolLimits
from .protocol.replies import Reply as Reply

__version__ = "0.1.0"
