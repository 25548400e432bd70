"""Frozen attrs configuration: every option of ``trimail serve``, with its default."""

from __future__ import annotations

import enum
import ipaddress
import re
from pathlib import Path

import attrs
from attrs import validators as v

from ..protocol.limits import ProtocolLimits

#: More worker processes than this is a typo, not a machine.
MAX_WORKERS = 256


@attrs.frozen
class ListenAddress:
    host: str
    port: int = attrs.field(validator=[v.ge(0), v.le(65535)])

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        """``HOST:PORT`` or ``[IPv6]:PORT``."""
        if text.startswith("["):
            host, bracket, port = text[1:].partition("]:")
            if not bracket:
                raise ValueError(f"expected [IPv6]:PORT such as [::1]:2525, got {text!r}")
            ipaddress.IPv6Address(host)
        else:
            host, colon, port = text.rpartition(":")
            if not colon or not host or ":" in host:
                raise ValueError(f"expected HOST:PORT such as 127.0.0.1:2525, got {text!r}")
        if not port.isdigit():
            raise ValueError(f"expected a numeric port, got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


class DeliveryKind(enum.Enum):
    MAILDIR = "maildir"
    DISCARD = "discard"


class LineEndings(enum.Enum):
    #: The message exactly as received: lossless, what DKIM signed (Dovecot: mail_save_crlf).
    CRLF = "crlf"
    #: Unix newlines, for tools that read Maildir files as plain text.
    LF = "lf"


@attrs.frozen(kw_only=True)
class DeliveryConfig:
    backend: DeliveryKind = DeliveryKind.MAILDIR
    maildir: Path = Path("maildir")
    line_endings: LineEndings = LineEndings.CRLF


@attrs.frozen(kw_only=True)
class Timeouts:
    """RFC 5321 §4.5.3.2 server timeouts, in seconds."""

    #: §4.5.3.2.7: 5 minutes for one complete command line, counted from our last reply.
    command: float = attrs.field(default=300.0, validator=v.gt(0))
    #: §4.5.3.2.5 (3 minutes per data block): the longest wait for the next bytes in DATA.
    data: float = attrs.field(default=180.0, validator=v.gt(0))
    #: Postfix smtpd_min_data_rate: once ``data`` seconds have passed, the average body rate
    #: must stay at or above this many bytes per second.
    data_min_rate: float = attrs.field(default=500.0, validator=v.ge(0))
    #: The longest a whole DATA phase may take (§4.5.3.2.6 gives 10 minutes for its end).
    data_total: float = attrs.field(default=600.0, validator=v.gt(0))
    #: On SIGTERM/SIGINT, how long a transaction in DATA may take to finish.
    shutdown_grace: float = attrs.field(default=10.0, validator=v.ge(0))
    #: A whole TLS handshake (after STARTTLS, or before the greeting on implicit TLS).
    tls_handshake: float = attrs.field(default=30.0, validator=v.gt(0))
    #: Postfix smtpd_error_sleep_time: past ``limits.soft_errors``, each error reply waits
    #: this long (only that session sleeps), so a misbehaving client costs itself time.
    error_delay: float = attrs.field(default=1.0, validator=v.ge(0))
    #: Wait this long before the 220 greeting; a client that talks first is an early talker
    #: (Postfix postscreen's pregreet test) and gets 554 5.5.0. 0 sends the greeting at once.
    greeting_delay: float = attrs.field(default=0.0, validator=v.ge(0))
    #: A PROXY protocol header must arrive within this many seconds.
    proxy_header: float = attrs.field(default=5.0, validator=v.gt(0))
    #: The longest a handler hook or a delivery may take; then 451 4.3.0 (421 on connect).
    handler: float = attrs.field(default=60.0, validator=v.gt(0))


_RATE = re.compile(r"(?P<count>[0-9]+)/(?P<unit>s|sec|min|h|hour)", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "hour": 3600.0}


@attrs.frozen
class Rate:
    """``count`` events per ``seconds`` (written ``30/min``); a count of 0 means unlimited."""

    count: int = attrs.field(validator=v.ge(0))
    seconds: float = attrs.field(default=60.0, validator=v.gt(0))

    @classmethod
    def parse(cls, text: str) -> Rate:
        match = _RATE.fullmatch(text.strip())
        if match is None:
            raise ValueError(f"expected COUNT/UNIT such as 30/min (units s, min, h), got {text!r}")
        return cls(int(match["count"]), _UNIT_SECONDS[match["unit"].lower()])

    @property
    def unlimited(self) -> bool:
        return self.count == 0

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds:g}s"


UNLIMITED = Rate(0)


def _network(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value, strict=False)


def _cidrs(
    _instance: object, attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
) -> None:
    for item in value:
        try:
            _network(item)
        except ValueError:
            message = f"'{attribute.name}' expected CIDR networks like 10.0.0.0/8, got {item!r}"
            raise ValueError(message) from None


@attrs.frozen(kw_only=True)
class AdmissionConfig:
    """Who may connect and how often (Postfix anvil); refusals are 421 4.7.0 or 450 4.7.1."""

    #: All sessions at once, across listeners: beyond it a new connection gets 421 and is
    #: closed before any session task exists.
    max_connections: int = attrs.field(default=1000, validator=v.ge(1))
    #: Sessions at once from one client (an IPv4 address or an IPv6 /84, as Postfix counts).
    max_connections_per_ip: int = attrs.field(default=20, validator=v.ge(1))
    #: New connections per client per unit of time (Postfix smtpd_client_connection_rate_limit;
    #: off by default there too).
    max_connection_rate_per_ip: Rate = UNLIMITED
    #: MAIL commands per client per unit of time (smtpd_client_message_rate_limit); 450 4.7.1.
    max_message_rate_per_ip: Rate = UNLIMITED
    #: Clients the per-IP limits never apply to (Postfix: $mynetworks, loopback by default),
    #: so local tools and load tests are not throttled; the global limit still applies.
    exempt: tuple[str, ...] = attrs.field(default=("127.0.0.0/8", "::1/128"), validator=_cidrs)

    @property
    def exempt_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(_network(item) for item in self.exempt)


@attrs.frozen(kw_only=True)
class ProxyConfig:
    """HAProxy PROXY protocol v1/v2 in front of every listener (behind a load balancer)."""

    enabled: bool = False
    #: Only these peers may send a PROXY header; anything else is closed at once.
    trusted: tuple[str, ...] = attrs.field(default=(), validator=_cidrs)

    def __attrs_post_init__(self) -> None:
        if self.enabled and not self.trusted:
            raise ValueError("'trusted' needs the load balancer's networks when PROXY is enabled")

    @property
    def trusted_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(_network(item) for item in self.trusted)


@attrs.frozen(kw_only=True)
class TlsConfig:
    """Certificate and policy for STARTTLS (RFC 3207) and implicit TLS (RFC 8314)."""

    #: PEM certificate chain; without it STARTTLS is not offered (454 4.7.0 if asked).
    cert: Path | None = None
    #: PEM private key; None means the key is in the ``cert`` file.
    key: Path | None = None
    #: Refuse MAIL (530 5.7.0) until the session is encrypted: for submission servers.
    require: bool = False

    def __attrs_post_init__(self) -> None:
        if self.cert is None and self.key is not None:
            raise ValueError("'cert' is needed when a key is given; add the certificate file")
        if self.cert is None and self.require:
            raise ValueError("'cert' is needed to require TLS; add a certificate and key")


@attrs.frozen(kw_only=True)
class ServerConfig:
    #: Plain listeners (STARTTLS offered when a certificate is configured).
    listen: tuple[ListenAddress, ...] = (ListenAddress("127.0.0.1", 2525),)
    #: Implicit TLS listeners (RFC 8314, port 465): the handshake comes before the greeting.
    listen_tls: tuple[ListenAddress, ...] = ()
    #: The name in the greeting and Received headers; None means the machine's FQDN.
    hostname: str | None = None
    delivery: DeliveryConfig = attrs.Factory(DeliveryConfig)
    limits: ProtocolLimits = attrs.Factory(ProtocolLimits)
    timeouts: Timeouts = attrs.Factory(Timeouts)
    tls: TlsConfig = attrs.Factory(TlsConfig)
    admission: AdmissionConfig = attrs.Factory(AdmissionConfig)
    proxy: ProxyConfig = attrs.Factory(ProxyConfig)
    #: Domains we receive mail for; RCPT to any other domain gets 550 5.7.1 (relay denied).
    #: Empty means every recipient is accepted (a catch-all, e.g. behind another MTA).
    accept_domains: tuple[str, ...] = ()
    #: Server processes sharing the listeners (SO_REUSEPORT); each takes its share of
    #: ``admission.max_connections``. 1 is a single process, no supervisor.
    workers: int = attrs.field(default=1, validator=[v.ge(1), v.le(MAX_WORKERS)])

    def __attrs_post_init__(self) -> None:
        if not self.listen and not self.listen_tls:
            raise ValueError("'listen' needs at least one HOST:PORT address")
        if self.listen_tls and self.tls.cert is None:
            raise ValueError("'listen_tls' needs a certificate; set tls.cert (--tls-cert)")
