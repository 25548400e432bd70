"""Admission control: how many sessions at once, per client, and how fast (Postfix anvil).

Pure bookkeeping with the time passed in, so the accept loop can refuse a connection without
starting a task, and tests can drive it with any clock. Memory and time stay bounded under a
flood from many addresses: a client entry exists only while it has sessions or a live rate
window; windows sit in a heap by expiry, so each admission drops just the expired ones
(no scans); and at most ``MAX_TRACKED_CLIENTS`` are tracked at all.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging

import attrs

from ..config.model import AdmissionConfig, Rate
from ..protocol import replies
from ..protocol.replies import Reply

log = logging.getLogger("trimail")

#: Postfix smtpd_client_ipv6_prefix_length: one IPv6 client is a /84, since a single host can
#: hop across the addresses of its /64 (and sites get a /56 or /48 anyway).
IPV6_CLIENT_PREFIX = 84
#: Beyond this many clients with live rate windows, new clients are not rate-tracked (they are
#: still counted per session and globally): about 200 bytes each, so ~20 MB at worst.
MAX_TRACKED_CLIENTS = 100_000


Networks = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]


def address_in(host: str, networks: Networks) -> bool:
    """True when ``host`` (an IPv4-mapped IPv6 address counts as IPv4) is in ``networks``."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


def client_key(host: str) -> str:
    """What per-client limits count: the IPv4 address, or the IPv6 address's /84 network."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, IPV6_CLIENT_PREFIX), strict=False))
    return str(address)


@attrs.define
class _Window:
    """A fixed window of ``rate.seconds`` (anvil's rate time unit) and the events in it."""

    started: float
    count: int = 0

    def hit(self, rate: Rate) -> bool:
        """Count one event; False when it is over the limit."""
        self.count += 1
        return self.count <= rate.count


@attrs.define
class _Client:
    sessions: int = 0
    #: False for a client first seen while the table was full: only its sessions count.
    rate_limited: bool = True
    connects: _Window | None = None
    messages: _Window | None = None


class Admission:
    def __init__(self, config: AdmissionConfig) -> None:
        self.config = config
        self._exempt = config.exempt_networks
        self._clients: dict[str, _Client] = {}
        self._full = False
        #: (when a window ends, client key): a heap, soonest first.
        self._expiries: list[tuple[float, str]] = []
        #: Sessions admitted and not yet released, across all clients.
        self.sessions = 0

    # -- the whole server ---------------------------------------------------------------------

    def admit_connection(self) -> Reply | None:
        """Count a new connection against ``max_connections``; None means admitted (then
        ``release_connection`` is owed), otherwise the 421 to send before closing."""
        if self.sessions >= self.config.max_connections:
            return replies.TOO_MANY_CONNECTIONS
        self.sessions += 1
        return None

    def release_connection(self) -> None:
        self.sessions -= 1

    # -- one client ---------------------------------------------------------------------------

    def exempt(self, host: str) -> bool:
        return address_in(host, self._exempt)

    def admit_client(self, host: str, now: float) -> Reply | None:
        """Per-client session count and connection rate; None means admitted (then
        ``release_client`` is owed)."""
        if self.exempt(host):
            return None
        key = client_key(host)
        client = self._client(key, now)
        rate = self.config.max_connection_rate_per_ip
        if client is None:  # untracked under a flood: only the session count applies
            client = self._clients[key] = _Client(rate_limited=False)
        if not rate.unlimited and client.rate_limited:
            client.connects = self._current(client.connects, key, now, rate)
            if not client.connects.hit(rate):
                return replies.CONNECTION_RATE_EXCEEDED
        if client.sessions >= self.config.max_connections_per_ip:
            return replies.TOO_MANY_CONNECTIONS_FROM_YOU
        client.sessions += 1
        return None

    def release_client(self, host: str, now: float) -> None:
        if self.exempt(host):
            return
        key = client_key(host)
        client = self._clients.get(key)
        if client is None:
            return
        client.sessions -= 1
        if self._idle(client, now):
            del self._clients[key]

    def allow_message(self, host: str, now: float) -> bool:
        """Count one MAIL command against the message rate; False means refuse it (450)."""
        rate = self.config.max_message_rate_per_ip
        if rate.unlimited or self.exempt(host):
            return True
        key = client_key(host)
        client = self._client(key, now)
        if client is None or not client.rate_limited:
            return True  # untracked under a flood
        client.messages = self._current(client.messages, key, now, rate)
        return client.messages.hit(rate)

    @property
    def tracked_clients(self) -> int:
        return len(self._clients)

    # -- bookkeeping --------------------------------------------------------------------------

    def _client(self, key: str, now: float) -> _Client | None:
        """The client's entry, created if there is room; None when too many are tracked."""
        self._expire(now)
        client = self._clients.get(key)
        if client is None:
            if len(self._clients) >= MAX_TRACKED_CLIENTS:
                if not self._full:
                    log.warning(
                        "admission: %d clients tracked; new ones are not rate-limited",
                        MAX_TRACKED_CLIENTS,
                    )
                    self._full = True
                return None
            self._full = False
            client = self._clients[key] = _Client()
        return client

    def _current(self, window: _Window | None, key: str, now: float, rate: Rate) -> _Window:
        """The client's live window, or a new one (queued for expiry) if it has none."""
        if window is not None and now < window.started + rate.seconds:
            return window
        heapq.heappush(self._expiries, (now + rate.seconds, key))
        return _Window(now)

    def _expire(self, now: float) -> None:
        """Drop clients whose windows all ended (a new window pushes a new expiry, so a client
        still in use is looked at again later)."""
        expiries = self._expiries
        while expiries and expiries[0][0] <= now:
            _, key = heapq.heappop(expiries)
            client = self._clients.get(key)
            if client is not None and self._idle(client, now):
                del self._clients[key]

    def _idle(self, client: _Client, now: float) -> bool:
        """No sessions and no rate window that still matters."""
        config = self.config
        return (
            client.sessions <= 0
            and _expired(client.connects, config.max_connection_rate_per_ip, now)
            and _expired(client.messages, config.max_message_rate_per_ip, now)
        )


def _expired(window: _Window | None, rate: Rate, now: float) -> bool:
    # The same arithmetic as the expiry heap (start + seconds), so floats agree on "ended".
    return window is None or window.started + rate.seconds <= now


class Ticket:
    """One admitted connection, and what to give back when its session ends."""

    def __init__(self, admission: Admission) -> None:
        self.admission = admission
        self._client: str | None = None
        self._released = False

    def admit_client(self, host: str, now: float) -> Reply | None:
        """Per-client limits for ``host`` (the socket peer, or the client a PROXY header
        named); None means admitted."""
        refusal = self.admission.admit_client(host, now)
        if refusal is None:
            self._client = host
        return refusal

    def allow_message(self, now: float) -> bool:
        return self._client is None or self.admission.allow_message(self._client, now)

    def release(self, now: float) -> None:
        if self._released:
            return
        self._released = True
        if self._client is not None:
            self.admission.release_client(self._client, now)
        self.admission.release_connection()
