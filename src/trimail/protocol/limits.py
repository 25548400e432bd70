"""Protocol limits: one frozen object, each default with its reason.

RFC 5321 §4.5.3.1 gives the sizes every receiver MUST accept; those are the floors here. The
core enforces every field in exactly one place (see ``connection`` and ``receive_buffer``).
Body text lines are deliberately not limited: §4.5.3.1 asks implementations to avoid length
limits where they can, real mail has long lines, and the DATA decoder never buffers a line, so
a long line costs no memory.
"""

from __future__ import annotations

import attrs
from attrs import validators as v

MiB = 1024 * 1024


@attrs.frozen(kw_only=True)
class ProtocolLimits:
    #: RFC 5321 §4.5.3.1.4: a command line is at most 512 octets including <CRLF>.
    max_command_line: int = attrs.field(default=512, validator=v.ge(512))
    #: A line this long is not a mistake but an attack: stop reading and close (421).
    absurd_line: int = attrs.field(default=64 * 1024, validator=v.ge(512))
    #: RFC 5321 §4.5.3.1.8: a receiver MUST accept at least 100 recipients per message.
    max_recipients: int = attrs.field(default=100, validator=v.ge(1))
    #: Advertised in EHLO SIZE (RFC 1870); 25 MiB is what large providers accept today.
    max_message_size: int = attrs.field(default=25 * MiB, validator=v.ge(1024))
    #: Postfix smtpd_hard_error_limit: after this many errors the session ends with 421.
    max_errors: int = attrs.field(default=20, validator=v.ge(1))
    #: Postfix smtpd_soft_error_limit: past this many errors each error reply is delayed
    #: (the I/O layer sleeps ``timeouts.error_delay``); at or above max_errors it never applies.
    soft_errors: int = attrs.field(default=10, validator=v.ge(0))
    #: Postfix smtpd_junk_command_limit: NOOP, RSET, VRFY and HELP beyond this many (counted
    #: until a message is accepted) count as errors, so they cannot keep a session alive forever.
    max_junk_commands: int = attrs.field(default=100, validator=v.ge(1))
    #: Replies queued but not yet sent beyond this stop parsing until they are sent: a client
    #: that pipelines without reading cannot grow the server's output buffer without bound.
    max_pending_output: int = attrs.field(default=16 * 1024, validator=v.ge(1024))

    def __attrs_post_init__(self) -> None:
        if self.absurd_line < self.max_command_line:
            raise ValueError("'absurd_line' must be at least max_command_line")
