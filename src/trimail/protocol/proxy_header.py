"""The HAProxy PROXY protocol header (v1 text and v2 binary): strict, bounded and incremental.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt. A listener configured for
the PROXY protocol hands every byte it reads to ``parse_proxy_header`` until it returns a
header; ``ProxyHeader.length`` says where the SMTP session starts in the same buffer.

Not PyPI proxy-protocol 0.11.3: it imports socket, has no size bound, and is lax ("+25" ports).

Strict means: whatever does not match the spec exactly is an error, raised as soon as the bytes
so far cannot begin a valid header (a client that sends "EHLO" to a PROXY listener fails on
its first byte). A listener either requires the header or never reads one: guessing whether one
is there would let any client spoof its address (spec section 5).
"""

from __future__ import annotations

import ipaddress
import re

import attrs

V1_PREFIX = b"PROXY "
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"

#: Spec 2.1: the longest v1 line ("PROXY UNKNOWN" + two full IPv6 addresses), CRLF included.
V1_MAX_LENGTH = 107
#: Signature, version/command, family/protocol, 2-byte length.
V2_FIXED_LENGTH = 16
#: The largest address block the spec defines (two 108-byte AF_UNIX paths): a smaller bound
#: could refuse a header with no TLVs at all.
MIN_MAX_LENGTH = V2_FIXED_LENGTH + 216
#: v2 lets a sender announce 16 + 65535 bytes, but every real header (addresses plus the TLVs
#: load balancers add: AWS VPC endpoint id, Azure link id, HAProxy's TLS TLVs with a client
#: CN) is a few hundred bytes and the spec has the sender emit it in one segment. Without a
#: bound each connection could make us buffer 64 KiB before its greeting and hold it for the
#: whole read deadline; with one, garbage is refused as soon as its length field arrives.
DEFAULT_MAX_LENGTH = 4096

_V2_COMMAND_LOCAL = 0x0
_V2_COMMAND_PROXY = 0x1
_V2_TCP4 = 0x11
_V2_TCP6 = 0x21
_V2_UNSPEC = 0x00
_V2_ADDRESS_LENGTH = {_V2_TCP4: 12, _V2_TCP6: 36}
_TLV_HEADER_LENGTH = 3

_PRINTABLE = re.compile(rb"[\x20-\x7e]*")
#: No heading zeroes (spec 2.1: "to avoid any possible confusion with octal numbers").
_PORT = re.compile(rb"0|[1-9][0-9]{0,4}")
_IPV4 = re.compile(rb"(?:0|[1-9][0-9]{0,2})(?:\.(?:0|[1-9][0-9]{0,2})){3}")
#: Every prefix of an _IPV4 match matches this (octet ranges are checked separately).
_IPV4_PREFIX = re.compile(rb"(?:(?:0|[1-9][0-9]{0,2})\.){0,3}(?:0|[1-9][0-9]{0,2})?")
#: Hex groups, colons and the dotted tail of an IPv4-mapped address; no "%zone".
_IPV6_CHARS = re.compile(rb"[0-9A-Fa-f:.]{0,45}")
_V1_PROTOCOLS = (b"TCP4", b"TCP6", b"UNKNOWN")
_V1_ROLES = ("source", "destination", "source", "destination")


@attrs.frozen
class ProxyAddresses:
    """The original connection, hosts in ``ipaddress``'s canonical text form.

    An IPv4-mapped IPv6 address (``::ffff:192.0.2.1``, what a dual-stack proxy reports for an
    IPv4 client) is given as the IPv4 address: that is the client SPF, DNSBLs and logs need.
    """

    source_host: str
    source_port: int
    dest_host: str
    dest_port: int


@attrs.frozen
class ProxyHeader:
    #: None for v2 LOCAL (health checks), v2 AF_UNSPEC and v1 "UNKNOWN": the proxy gave no
    #: client, so use the socket's own peer address.
    addresses: ProxyAddresses | None
    #: 1 or 2.
    version: int
    #: Bytes the header took; the bytes after it are the start of the SMTP session (a client
    #: may not pipeline before our greeting, but the caller must keep them to judge that).
    length: int


class ProxyHeaderError(ValueError):
    """The bytes are not a PROXY header trimail accepts; ``str()`` is one log line."""


def parse_proxy_header(
    data: bytes | bytearray, *, max_length: int = DEFAULT_MAX_LENGTH
) -> ProxyHeader | None:
    """Parse the PROXY header at the start of ``data`` (everything read so far).

    Returns None when more bytes are needed; the bytes so far are then a valid prefix. Raises
    ProxyHeaderError as soon as they cannot begin a valid header, or when the header would be
    longer than ``max_length`` (v1 lines are bounded by the spec's 107 bytes regardless), so a
    caller never needs more than ``max_length`` bytes for an answer. The answer does not
    depend on how the bytes were split: call again with the grown buffer (each call looks at
    no more than ``max_length`` bytes of it).
    """
    if max_length < MIN_MAX_LENGTH:
        raise ValueError(f"max_length must be at least {MIN_MAX_LENGTH}, not {max_length}")
    window = bytes(data[:max_length])
    if V2_SIGNATURE.startswith(window[: len(V2_SIGNATURE)]):
        return _parse_v2(window, max_length)
    if V1_PREFIX.startswith(window[: len(V1_PREFIX)]):
        return _parse_v1(window[:V1_MAX_LENGTH])
    raise ProxyHeaderError(f"not a PROXY protocol header: {window[:16]!r}")


# -- version 1 ------------------------------------------------------------------------------


def _parse_v1(window: bytes) -> ProxyHeader | None:
    if len(window) < len(V1_PREFIX):
        return None  # a proper prefix of "PROXY "
    lf = window.find(b"\n")
    if lf == -1:
        if len(window) == V1_MAX_LENGTH:
            raise ProxyHeaderError(f"PROXY v1 line without CRLF in {V1_MAX_LENGTH} bytes")
        if window.endswith(b"\r"):
            # Only LF may follow: the fields must already be complete.
            _v1_line(window[:-1], complete=True)
        else:
            _v1_line(window, complete=False)
        return None
    if window[lf - 1 : lf] != b"\r":
        raise ProxyHeaderError("PROXY v1 line ends in a bare LF")
    addresses = _v1_line(window[: lf - 1], complete=True)
    return ProxyHeader(addresses=addresses, version=1, length=lf + 1)


def _v1_line(line: bytes, *, complete: bool) -> ProxyAddresses | None:
    """Check a v1 line without its CRLF; with ``complete=False`` its last field may go on."""
    if not _PRINTABLE.fullmatch(line):
        bad = re.search(rb"[^\x20-\x7e]", line)
        assert bad is not None
        what = "CR not followed by LF" if bad.group() == b"\r" else f"byte {bad.group()!r}"
        raise ProxyHeaderError(f"PROXY v1 line has {what} at offset {bad.start()}")
    fields = line[len(V1_PREFIX) :].split(b" ")
    protocol = fields[0]
    if not complete and len(fields) == 1:
        if not any(name.startswith(protocol) for name in _V1_PROTOCOLS):
            raise ProxyHeaderError(f"PROXY v1 protocol {protocol!r} is not TCP4, TCP6 or UNKNOWN")
        return None
    if protocol == b"UNKNOWN":
        return None  # spec 2.1: the receiver must ignore the rest of the line
    if protocol not in _V1_PROTOCOLS:
        raise ProxyHeaderError(f"PROXY v1 protocol {protocol!r} is not TCP4, TCP6 or UNKNOWN")
    if len(fields) > 5:
        raise ProxyHeaderError(f"PROXY v1 {protocol.decode()} line has more than 4 fields")
    ipv6 = protocol == b"TCP6"
    if complete:
        if len(fields) < 5:
            raise ProxyHeaderError(f"PROXY v1 {protocol.decode()} line has fewer than 4 fields")
        source, dest, source_port, dest_port = fields[1:]
        return ProxyAddresses(
            source_host=_v1_host(source, "source", ipv6=ipv6),
            source_port=_v1_port(source_port, "source"),
            dest_host=_v1_host(dest, "destination", ipv6=ipv6),
            dest_port=_v1_port(dest_port, "destination"),
        )
    # Every field but the last is complete; the last one is checked as far as it goes.
    *done, growing = fields[1:]
    for index, field in enumerate(done):
        if index < 2:
            _v1_host(field, _V1_ROLES[index], ipv6=ipv6)
        else:
            _v1_port(field, _V1_ROLES[index])
    role = _V1_ROLES[len(done)]
    if len(done) < 2:
        if not _v1_host_prefix(growing, ipv6=ipv6):
            family = "IPv6" if ipv6 else "IPv4"
            raise ProxyHeaderError(f"PROXY v1 {role} address {growing!r} is not {family}")
    elif not _v1_port_prefix(growing):
        raise ProxyHeaderError(f"PROXY v1 {role} port {growing!r} is not valid")
    return None


def _v1_host(field: bytes, role: str, *, ipv6: bool) -> str:
    # The patterns come first: they rule out zone ids, and heading zeroes whatever the
    # Python version's ipaddress would allow.
    if (_IPV6_CHARS if ipv6 else _IPV4).fullmatch(field):
        text = field.decode("ascii")
        try:
            return _canonical(ipaddress.IPv6Address(text) if ipv6 else ipaddress.IPv4Address(text))
        except ValueError:
            pass
    family = "IPv6" if ipv6 else "IPv4"
    raise ProxyHeaderError(f"PROXY v1 {role} address {field!r} is not {family}")


def _v1_port(field: bytes, role: str) -> int:
    if not _PORT.fullmatch(field) or int(field) > 65535:
        raise ProxyHeaderError(f"PROXY v1 {role} port {field!r} is not valid")
    return int(field)


def _v1_host_prefix(field: bytes, *, ipv6: bool) -> bool:
    """Whether some completion of ``field`` could be a valid address."""
    if ipv6:
        return _IPV6_CHARS.fullmatch(field) is not None
    return _IPV4_PREFIX.fullmatch(field) is not None and all(
        int(octet) <= 255 for octet in field.split(b".") if octet
    )


def _v1_port_prefix(field: bytes) -> bool:
    return field == b"" or (_PORT.fullmatch(field) is not None and int(field) <= 65535)


# -- version 2 ------------------------------------------------------------------------------


def _parse_v2(window: bytes, max_length: int) -> ProxyHeader | None:
    if len(window) <= len(V2_SIGNATURE):
        return None
    version, command = window[12] >> 4, window[12] & 0x0F
    if version != 2:
        raise ProxyHeaderError(f"PROXY v2 header has version {version}")
    if command not in (_V2_COMMAND_LOCAL, _V2_COMMAND_PROXY):
        raise ProxyHeaderError(f"PROXY v2 header has unknown command {command:#x}")
    if len(window) < 14:
        return None
    family = window[13]
    if family >> 4 > 3 or family & 0x0F > 2:
        # Spec 2.2: undefined families and protocols "must be rejected as invalid".
        raise ProxyHeaderError(f"PROXY v2 header has invalid family/protocol {family:#04x}")
    if command == _V2_COMMAND_PROXY and family not in (_V2_UNSPEC, _V2_TCP4, _V2_TCP6):
        # UDP or AF_UNIX: no SMTP client can be behind it, and falling back to the proxy's
        # own address would file every such session under the load balancer.
        raise ProxyHeaderError(f"PROXY v2 header proxies unsupported family {family:#04x}")
    if len(window) < V2_FIXED_LENGTH:
        return None
    block = int.from_bytes(window[14:16], "big")
    length = V2_FIXED_LENGTH + block
    if length > max_length:
        raise ProxyHeaderError(f"PROXY v2 header of {length} bytes exceeds {max_length}")
    needed = _V2_ADDRESS_LENGTH.get(family, 0) if command == _V2_COMMAND_PROXY else 0
    if block < needed:
        raise ProxyHeaderError(f"PROXY v2 address block of {block} bytes, {needed} needed")
    if len(window) < length:
        return None
    if command == _V2_COMMAND_LOCAL or family == _V2_UNSPEC:
        # Spec 2.2: LOCAL discards the block "including the family"; AF_UNSPEC "should
        # ignore address information", so nothing says where TLVs would start.
        return ProxyHeader(addresses=None, version=2, length=length)
    start = V2_FIXED_LENGTH
    size = needed // 2 - 2
    source = window[start : start + size]
    dest = window[start + size : start + 2 * size]
    ports = window[start + 2 * size : start + needed]
    _check_tlvs(window, start + needed, length)
    return ProxyHeader(
        addresses=ProxyAddresses(
            source_host=_v2_host(source),
            source_port=int.from_bytes(ports[:2], "big"),
            dest_host=_v2_host(dest),
            dest_port=int.from_bytes(ports[2:], "big"),
        ),
        version=2,
        length=length,
    )


def _canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """``ipaddress``'s text form, IPv4-mapped IPv6 as the IPv4 address it maps."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _v2_host(packed: bytes) -> str:
    if len(packed) == 4:
        return _canonical(ipaddress.IPv4Address(packed))
    return _canonical(ipaddress.IPv6Address(packed))


def _check_tlvs(window: bytes, offset: int, end: int) -> None:
    """TLVs are skipped, but they must tile the rest of the block exactly.

    Their contents (ALPN, authority, TLS details, unique id) are not reported, and a CRC32C
    TLV is not verified: the spec leaves checksum support to the receiver.
    """
    while offset < end:
        if end - offset < _TLV_HEADER_LENGTH:
            raise ProxyHeaderError(f"PROXY v2 TLV header truncated at offset {offset}")
        tlv_type = window[offset]
        tlv_end = (
            offset + _TLV_HEADER_LENGTH + int.from_bytes(window[offset + 1 : offset + 3], "big")
        )
        if tlv_end > end:
            raise ProxyHeaderError(
                f"PROXY v2 TLV {tlv_type:#04x} at offset {offset} runs past the header end"
            )
        offset = tlv_end
