"""The PROXY protocol header parser: valid v1/v2 headers, every malformation, and incrementality."""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimail.protocol.proxy_header import (
    DEFAULT_MAX_LENGTH,
    MIN_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyAddresses,
    ProxyHeader,
    ProxyHeaderError,
    parse_proxy_header,
)

SETTINGS = settings(
    max_examples=300,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

LOCAL, PROXY = 0x0, 0x1
UNSPEC, TCP4, UDP4, TCP6, UDP6, UNIX_STREAM, UNIX_DGRAM = 0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32

Outcome = ProxyHeader | ProxyHeaderError | None


# -- helpers ---------------------------------------------------------------------------------


def v2(
    command: int = PROXY,
    family: int = TCP4,
    block: bytes = b"",
    *,
    version: int = 2,
    length: int | None = None,
) -> bytes:
    """A v2 header: signature, version/command, family/protocol, length, then ``block``."""
    declared = len(block) if length is None else length
    return V2_SIGNATURE + struct.pack("!BBH", version << 4 | command, family, declared) + block


def ipv4_block(source: str, dest: str, source_port: int, dest_port: int) -> bytes:
    return struct.pack(
        "!4s4sHH",
        ipaddress.IPv4Address(source).packed,
        ipaddress.IPv4Address(dest).packed,
        source_port,
        dest_port,
    )


def ipv6_block(source: str, dest: str, source_port: int, dest_port: int) -> bytes:
    return struct.pack(
        "!16s16sHH",
        ipaddress.IPv6Address(source).packed,
        ipaddress.IPv6Address(dest).packed,
        source_port,
        dest_port,
    )


def tlv(tlv_type: int, value: bytes) -> bytes:
    return struct.pack("!BH", tlv_type, len(value)) + value


def outcome(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> Outcome:
    try:
        return parse_proxy_header(data, max_length=max_length)
    except ProxyHeaderError as error:
        return error


def fed(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> Outcome:
    """The first decisive answer when ``data`` arrives one byte at a time, as a caller sees it."""
    for end in range(len(data) + 1):
        result = outcome(data[:end], max_length)
        if result is not None:
            return result
    return None


def assert_split_blind(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> Outcome:
    """Every prefix agrees with the whole buffer; returns the whole buffer's outcome."""
    whole = outcome(data, max_length)
    incremental = fed(data, max_length)
    if isinstance(whole, ProxyHeaderError):
        assert isinstance(incremental, ProxyHeaderError), (data, incremental)
        # Once a prefix is refused, every longer buffer is refused too.
        first = next(
            end for end in range(len(data) + 1) if outcome(data[:end], max_length) is not None
        )
        for end in range(first, len(data) + 1):
            assert isinstance(outcome(data[:end], max_length), ProxyHeaderError), data[:end]
    else:
        assert incremental == whole, (data, incremental, whole)
    if isinstance(whole, ProxyHeader):
        for end in range(len(data) + 1):
            expected = whole if end >= whole.length else None
            assert outcome(data[:end], max_length) == expected, data[:end]
    return whole


def parse_ok(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> ProxyHeader:
    result = assert_split_blind(data, max_length)
    assert isinstance(result, ProxyHeader), (data, result)
    return result


def parse_error(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> ProxyHeaderError:
    result = assert_split_blind(data, max_length)
    assert isinstance(result, ProxyHeaderError), (data, result)
    message = str(result)
    assert message and "\n" not in message and "\r" not in message
    assert len(message) < 200
    return result


def addresses(source: str, source_port: int, dest: str, dest_port: int) -> ProxyAddresses:
    return ProxyAddresses(source, source_port, dest, dest_port)


# -- valid v1 --------------------------------------------------------------------------------

V1_VALID: list[tuple[bytes, ProxyAddresses | None]] = [
    (
        b"PROXY TCP4 192.0.2.1 198.51.100.2 56324 25\r\n",
        addresses("192.0.2.1", 56324, "198.51.100.2", 25),
    ),
    (
        b"PROXY TCP4 255.255.255.255 255.255.255.255 65535 65535\r\n",
        addresses("255.255.255.255", 65535, "255.255.255.255", 65535),
    ),
    (b"PROXY TCP4 0.0.0.0 0.0.0.0 0 0\r\n", addresses("0.0.0.0", 0, "0.0.0.0", 0)),
    (b"PROXY TCP4 10.0.0.1 10.0.0.2 1 10\r\n", addresses("10.0.0.1", 1, "10.0.0.2", 10)),
    (
        b"PROXY TCP6 2001:db8::1 2001:db8::25 40000 587\r\n",
        addresses("2001:db8::1", 40000, "2001:db8::25", 587),
    ),
    (
        b"PROXY TCP6 2001:DB8:0:0:0:0:0:1 2001:0db8:0000::0025 1 2\r\n",
        addresses("2001:db8::1", 1, "2001:db8::25", 2),
    ),
    (b"PROXY TCP6 :: ::1 0 25\r\n", addresses("::", 0, "::1", 25)),
    (
        b"PROXY TCP6 "
        + b":".join([b"ffff"] * 8)
        + b" "
        + b":".join([b"ffff"] * 8)
        + b" 65535 65535\r\n",
        addresses(
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            65535,
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
            65535,
        ),
    ),
    # A dual-stack proxy's IPv4 client: given as the IPv4 address.
    (
        b"PROXY TCP6 ::ffff:192.0.2.1 ::ffff:c633:6402 1025 25\r\n",
        addresses("192.0.2.1", 1025, "198.51.100.2", 25),
    ),
    (b"PROXY UNKNOWN\r\n", None),
    (b"PROXY UNKNOWN \r\n", None),
    (b"PROXY UNKNOWN anything  at all: ignored\r\n", None),
    # The spec's worst case, exactly 107 bytes.
    (
        b"PROXY UNKNOWN "
        + b":".join([b"ffff"] * 8)
        + b" "
        + b":".join([b"ffff"] * 8)
        + b" 65535 65535\r\n",
        None,
    ),
]


@pytest.mark.parametrize(("wire", "expected"), V1_VALID)
def test_valid_v1(wire: bytes, expected: ProxyAddresses | None) -> None:
    header = parse_ok(wire)
    assert header == ProxyHeader(addresses=expected, version=1, length=len(wire))


def test_v1_longest_lines_are_the_specs() -> None:
    lengths = {len(wire) for wire, _ in V1_VALID}
    assert max(lengths) == 107  # "PROXY UNKNOWN" with two full IPv6 addresses
    assert 104 in lengths  # the longest TCP6 line
    assert 56 in lengths  # the longest TCP4 line


# -- valid v2 --------------------------------------------------------------------------------

AWS_VPCE = tlv(0xEA, b"\x01vpce-08d2bf15fac5001c9")
SSL_TLV = tlv(0x20, b"\x01\x00\x00\x00\x00" + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"mx.example"))

V2_VALID: list[tuple[bytes, ProxyAddresses | None]] = [
    (
        v2(PROXY, TCP4, ipv4_block("192.0.2.1", "198.51.100.2", 56324, 25)),
        addresses("192.0.2.1", 56324, "198.51.100.2", 25),
    ),
    (
        v2(PROXY, TCP4, ipv4_block("255.255.255.255", "0.0.0.0", 65535, 0)),
        addresses("255.255.255.255", 65535, "0.0.0.0", 0),
    ),
    (
        v2(
            PROXY,
            TCP4,
            ipv4_block("192.0.2.1", "198.51.100.2", 1, 2)
            + tlv(0x01, b"smtp")
            + tlv(0x02, b"mx.example")
            + tlv(0x04, b"")
            + tlv(0x05, bytes(128))
            + AWS_VPCE
            + SSL_TLV,
        ),
        addresses("192.0.2.1", 1, "198.51.100.2", 2),
    ),
    (
        v2(PROXY, TCP6, ipv6_block("2001:db8::1", "2001:db8::25", 40000, 587)),
        addresses("2001:db8::1", 40000, "2001:db8::25", 587),
    ),
    (
        v2(PROXY, TCP6, ipv6_block("2001:db8::1", "2001:db8::25", 1, 25) + tlv(0x04, bytes(5))),
        addresses("2001:db8::1", 1, "2001:db8::25", 25),
    ),
    (
        v2(PROXY, TCP6, ipv6_block("::ffff:192.0.2.1", "::ffff:198.51.100.2", 1, 25)),
        addresses("192.0.2.1", 1, "198.51.100.2", 25),
    ),
    # LOCAL (health checks): the block is discarded "including the family".
    (v2(LOCAL, UNSPEC), None),
    (v2(LOCAL, TCP4, ipv4_block("192.0.2.1", "198.51.100.2", 1, 2)), None),
    (v2(LOCAL, TCP6, bytes(7)), None),
    (v2(LOCAL, UDP4, bytes(12)), None),
    (v2(LOCAL, UNIX_STREAM, bytes(216)), None),
    (v2(LOCAL, UNIX_DGRAM), None),
    (v2(LOCAL, 0x10), None),
    # AF_UNSPEC: "the receiver should ignore address information", whatever the block holds.
    (v2(PROXY, UNSPEC), None),
    (v2(PROXY, UNSPEC, b"\xff" * 40), None),
]


@pytest.mark.parametrize(("wire", "expected"), V2_VALID)
def test_valid_v2(wire: bytes, expected: ProxyAddresses | None) -> None:
    header = parse_ok(wire)
    assert header == ProxyHeader(addresses=expected, version=2, length=len(wire))


TRAILERS = [
    b"",
    b"\r\n",
    b"EHLO client.example\r\n",
    b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
    V2_SIGNATURE,
    b"\x00" * 600,
]


@pytest.mark.parametrize("trailer", TRAILERS)
@pytest.mark.parametrize(("wire", "expected"), V1_VALID + V2_VALID)
def test_bytes_after_the_header_are_left_to_the_caller(
    wire: bytes, expected: ProxyAddresses | None, trailer: bytes
) -> None:
    data = wire + trailer
    header = parse_ok(data)
    assert header.addresses == expected
    assert header.length == len(wire)
    assert data[header.length :] == trailer


def test_bytearray_input() -> None:
    wire = bytearray(V1_VALID[0][0] + b"EHLO x\r\n")
    header = parse_proxy_header(wire)
    assert header is not None
    assert header.addresses == V1_VALID[0][1]


def test_v2_header_of_exactly_max_length() -> None:
    wire = v2(PROXY, TCP4, ipv4_block("192.0.2.1", "198.51.100.2", 1, 2))
    padded = v2(PROXY, TCP4, wire[16:] + tlv(0x04, bytes(300 - len(wire) - 3)))
    assert len(padded) == 300
    assert parse_ok(padded, max_length=300).length == 300
    parse_error(padded, max_length=299)
    big = v2(PROXY, TCP4, wire[16:] + tlv(0x04, bytes(DEFAULT_MAX_LENGTH - len(wire) - 3)))
    assert parse_ok(big).length == DEFAULT_MAX_LENGTH


def test_max_length_below_the_spec_minimum_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="max_length") as raised:
        parse_proxy_header(b"PROXY ", max_length=MIN_MAX_LENGTH - 1)
    assert not isinstance(raised.value, ProxyHeaderError)
    assert parse_proxy_header(b"PROXY ", max_length=MIN_MAX_LENGTH) is None


# -- malformed: early detection ----------------------------------------------------------------

GOOD4 = ipv4_block("192.0.2.1", "198.51.100.2", 1, 2)


@pytest.mark.parametrize(
    "refused",
    [
        b"E",  # EHLO to a PROXY listener
        b"\x16",  # a TLS ClientHello
        b"G",  # HTTP
        b"p",  # lowercase "proxy"
        b"PR0",
        b"PROXY\r",
        b"PROXY\t",
        b"PROXY  ",
        b"PROXY t",
        b"PROXY TCP5",
        b"PROXY UD",
        b"PROXY UNKNOWNX",
        b"PROXY TCP4  ",
        b"PROXY TCP4 a",
        b"PROXY TCP4 01",
        b"PROXY TCP4 256",
        b"PROXY TCP4 1..",
        b"PROXY TCP4 1.2.3.4.",
        b"PROXY TCP4 1.2.3 ",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 00",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 +",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 65536",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 123456",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 25 25 ",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 25\r",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 25 25\rX",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 25 25\n",
        b"PROXY TCP6 fe80::1%",
        b"PROXY TCP6 g",
        b"PROXY TCP6 ::1 ::2 1 2\x00",
        b"PROXY UNKNOWN \x80",
        b"PROXY UNKNOWN \t",
        b"PROXY UNKNOWN\n",
        b"\r\n\r\n\x00\r\nQUIT\r",
        b"\r\n\r\n\x01",
        b"\n",
    ],
)
def test_refused_as_soon_as_no_valid_header_can_follow(refused: bytes) -> None:
    assert parse_proxy_header(refused[:-1]) is None
    with pytest.raises(ProxyHeaderError):
        parse_proxy_header(refused)


@pytest.mark.parametrize(
    "prefix",
    [
        b"",
        b"P",
        b"PROXY ",
        b"PROXY T",
        b"PROXY U",
        b"PROXY TCP4 ",
        b"PROXY TCP4 1",
        b"PROXY TCP4 1.2.3.4 ",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535",
        b"PROXY TCP4 1.2.3.4 5.6.7.8 0 65535\r",
        b"PROXY TCP6 ::ffff:1.2",
        b"PROXY UNKNOWN",
        b"PROXY UNKNOWN \r",
        b"\r",
        V2_SIGNATURE,
        v2(PROXY, TCP4)[:15],
        v2(PROXY, TCP4, GOOD4)[:27],
    ],
)
def test_valid_prefixes_wait_for_more(prefix: bytes) -> None:
    assert parse_proxy_header(prefix) is None


def test_every_byte_of_the_v2_signature_is_checked_on_arrival() -> None:
    for index in range(len(V2_SIGNATURE)):
        wrong = bytearray(V2_SIGNATURE[: index + 1])
        wrong[index] ^= 0x40
        with pytest.raises(ProxyHeaderError):
            parse_proxy_header(bytes(wrong))
        assert parse_proxy_header(V2_SIGNATURE[:index]) is None


def test_every_byte_of_proxy_space_is_checked_on_arrival() -> None:
    for index in range(6):
        wrong = bytearray(b"PROXY "[: index + 1])
        wrong[index] ^= 0x20
        with pytest.raises(ProxyHeaderError):
            parse_proxy_header(bytes(wrong))


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        (v2(version=1)[:13], "version 1"),
        (v2(version=3)[:13], "version 3"),
        (v2(version=0xF)[:13], "version 15"),
        (v2(command=0x2)[:13], "command"),
        (v2(command=0xF)[:13], "command"),
        (v2(PROXY, 0x41)[:14], "invalid family"),
        (v2(LOCAL, 0x41)[:14], "invalid family"),
        (v2(LOCAL, 0x13)[:14], "invalid family"),
        (v2(PROXY, 0xFF)[:14], "invalid family"),
        (v2(PROXY, UDP4)[:14], "unsupported family"),
        (v2(PROXY, UDP6)[:14], "unsupported family"),
        (v2(PROXY, UNIX_STREAM)[:14], "unsupported family"),
        (v2(PROXY, UNIX_DGRAM)[:14], "unsupported family"),
        (v2(PROXY, 0x10)[:14], "unsupported family"),
        (v2(PROXY, 0x01)[:14], "unsupported family"),
        (v2(PROXY, TCP4, length=11)[:16], "address block of 11 bytes, 12 needed"),
        (v2(PROXY, TCP4, length=0)[:16], "address block"),
        (v2(PROXY, TCP6, length=35)[:16], "36 needed"),
        (v2(PROXY, TCP6, length=12)[:16], "36 needed"),
        (v2(PROXY, TCP4, length=0xFFFF)[:16], "65551 bytes exceeds 4096"),
        (v2(LOCAL, UNSPEC, length=DEFAULT_MAX_LENGTH - 15)[:16], "exceeds"),
    ],
)
def test_v2_header_fields_are_refused_on_arrival(prefix: bytes, message: str) -> None:
    assert parse_proxy_header(prefix[:-1]) is None
    with pytest.raises(ProxyHeaderError, match=message):
        parse_proxy_header(prefix)


# -- malformed: whole headers ------------------------------------------------------------------

V2_MALFORMED = [
    # A TLV running past the end of the header, or a TLV header cut short.
    v2(PROXY, TCP4, GOOD4 + b"\x04\x00\x05abcd"),
    v2(PROXY, TCP4, GOOD4 + tlv(0x04, b"ok") + b"\x04\x00\x01"),
    v2(PROXY, TCP4, GOOD4 + b"\x04"),
    v2(PROXY, TCP4, GOOD4 + b"\x04\x00"),
    v2(PROXY, TCP4, GOOD4 + b"\x04\xff\xff"),
    v2(PROXY, TCP6, ipv6_block("::1", "::2", 1, 2) + b"\x20\x00\x10" + tlv(0x21, b"TLSv1.3")),
    # The declared length is bigger than the header that fits in max_length.
    v2(PROXY, TCP4, GOOD4, length=DEFAULT_MAX_LENGTH) + bytes(DEFAULT_MAX_LENGTH),
    v2(PROXY, TCP4, GOOD4, length=11),
    v2(PROXY, UDP4, GOOD4),
    v2(PROXY, UNIX_STREAM, bytes(216)),
    v2(2, TCP4, GOOD4),
    v2(PROXY, TCP4, GOOD4, version=1),
]


@pytest.mark.parametrize("wire", V2_MALFORMED)
def test_malformed_v2(wire: bytes) -> None:
    parse_error(wire)


def test_truncated_v2_waits_then_the_caller_times_out() -> None:
    # A partial header is not an error by itself: the caller's deadline decides.
    wire = v2(PROXY, TCP6, ipv6_block("::1", "::2", 1, 2))
    for end in range(len(wire)):
        assert parse_proxy_header(wire[:end]) is None


def ffff(count: int) -> bytes:
    return b":".join([b"ffff"] * count)


V1_MALFORMED = [
    # Not PROXY at all, or the wrong case.
    b"EHLO client.example\r\n",
    b"proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"Proxy TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY tcp4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY unknown\r\n",
    b"PROXY\r\n",
    b"PROXY \r\n",
    b"PROXY UDP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP 192.0.2.1 198.51.100.2 1 2\r\n",
    # Line endings.
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n\r\n",
    b"PROXY UNKNOWN\n",
    b"PROXY UNKNOWN a\rb\r\n",
    b"PROXY UNKNOWN a\nb\r\n",
    # No CRLF within 107 bytes.
    b"PROXY UNKNOWN " + b"a" * 93,
    b"PROXY UNKNOWN " + b"a" * 92 + b"\r\n",
    b"PROXY UNKNOWN " + ffff(8) + b" " + ffff(8) + b" 65535 655350\r\n",
    b"PROXY UNKNOWN " + b" " * 200 + b"\r\n",
    # Spaces.
    b"PROXY  TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4  192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1  198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2  1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1  2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 \r\n",
    b" PROXY TCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY\tTCP4 192.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4\t192.0.2.1 198.51.100.2 1 2\r\n",
    # Field counts.
    b"PROXY TCP4\r\n",
    b"PROXY TCP4 192.0.2.1\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n",
    b"PROXY TCP6 ::1 ::2 1\r\n",
    # Bad IPv4 addresses.
    b"PROXY TCP4 256.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1.5 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 010.0.0.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.01 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.002 1 2\r\n",
    b"PROXY TCP4 0x1.0.2.1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 3221225985 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.-1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2. 1 2\r\n",
    b"PROXY TCP4 ::1 198.51.100.2 1 2\r\n",
    b"PROXY TCP4 192.0.2.1 ::1 1 2\r\n",
    b"PROXY TCP4 \xd9\xa1.0.2.1 198.51.100.2 1 2\r\n",
    # Bad IPv6 addresses.
    b"PROXY TCP6 192.0.2.1 ::1 1 2\r\n",
    b"PROXY TCP6 ::1 192.0.2.1 1 2\r\n",
    b"PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n",
    b"PROXY TCP6 fe80::1%25 ::1 1 2\r\n",
    b"PROXY TCP6 2001:db8:::1 ::1 1 2\r\n",
    b"PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n",
    b"PROXY TCP6 1:2:3:4:5:6:7 ::1 1 2\r\n",
    b"PROXY TCP6 12345::1 ::1 1 2\r\n",
    b"PROXY TCP6 g::1 ::1 1 2\r\n",
    b"PROXY TCP6 [::1] ::1 1 2\r\n",
    b"PROXY TCP6 ::ffff:01.2.3.4 ::1 1 2\r\n",
    b"PROXY TCP6 ::1 : 1 2\r\n",
    # Bad ports.
    b"PROXY TCP4 192.0.2.1 198.51.100.2 65536 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 65536\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 99999 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 +25 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 -1 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 025 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 00\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 2_5 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 0x19 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1e3 2\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 25.0 2\r\n",
    "PROXY TCP4 192.0.2.1 198.51.100.2 \u0662\u0665 2\r\n".encode(),
    # Non-ASCII and control characters anywhere.
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\xc2\xa0\r\n",
    b"PROXY TCP4 192.0.2.1 198.51.100.2 1\x002\r\n",
    b"PROXY UNKNOWN \xff\r\n",
    b"PROXY UNKNOWN \x00\r\n",
    b"PROXY UNKNOWN \x7f\r\n",
    "PROXY UNKNOWN \u00e9\r\n".encode(),
]


@pytest.mark.parametrize("wire", V1_MALFORMED)
def test_malformed_v1(wire: bytes) -> None:
    parse_error(wire)


def test_v1_needs_at_most_107_bytes_to_decide() -> None:
    line = b"PROXY UNKNOWN " + b"a" * 93
    assert len(line) == 107
    assert parse_proxy_header(line[:106]) is None
    with pytest.raises(ProxyHeaderError, match="without CRLF in 107 bytes"):
        parse_proxy_header(line)


@pytest.mark.parametrize(
    ("wire", "message"),
    [
        (b"EHLO client.example\r\n", "not a PROXY protocol header: b'EHLO client.exam'$"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2\n", "bare LF"),
        (b"PROXY UNKNOWN a\rb\r\n", "CR not followed by LF at offset 15"),
        (b"PROXY UNKNOWN \xff\r\n", r"byte b'\\xff' at offset 14"),
        (b"PROXY TCP4 010.0.0.1 198.51.100.2 1 2\r\n", "source address b'010.0.0.1' is not IPv4"),
        (b"PROXY TCP6 ::1 ::1%1 1 2\r\n", "destination address b'::1%1' is not IPv6"),
        (b"PROXY TCP6 ::1 ::1 1 +2\r\n", "destination port b'\\+2' is not valid"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1 2 3\r\n", "more than 4 fields"),
        (b"PROXY TCP4 192.0.2.1 198.51.100.2 1\r\n", "fewer than 4 fields"),
        (b"PROXY TCP7 ", "protocol b'TCP7' is not TCP4, TCP6 or UNKNOWN"),
        (v2(PROXY, TCP4, GOOD4 + b"\x04\x00\x05abcd"), "TLV 0x04 at offset 28 runs past"),
        (v2(PROXY, TCP4, GOOD4 + b"\x04\x00"), "TLV header truncated at offset 28"),
    ],
)
def test_error_messages_say_what_is_wrong(wire: bytes, message: str) -> None:
    with pytest.raises(ProxyHeaderError, match=message):
        parse_proxy_header(wire)


# -- properties --------------------------------------------------------------------------------


def _plausible_prefix(data: bytes, max_length: int) -> bool:
    """What a None answer promises: a proper prefix of something that could still be valid."""
    if len(data) >= max_length:
        return False
    if V2_SIGNATURE.startswith(data[:12]):
        if len(data) < 16:
            return True
        return len(data) < 16 + int.from_bytes(data[14:16], "big")
    return b"PROXY ".startswith(data[:6]) and b"\n" not in data and len(data) < 107


def _check_any_input(data: bytes, max_length: int = DEFAULT_MAX_LENGTH) -> None:
    result = outcome(data, max_length)
    if result is None:
        assert _plausible_prefix(data, max_length), data
    elif isinstance(result, ProxyHeader):
        assert 0 < result.length <= len(data)
        assert result.version == (2 if data.startswith(V2_SIGNATURE) else 1)
        assert outcome(data[: result.length], max_length) == result
        assert outcome(data[: result.length - 1], max_length) is None
        assert outcome(data + b"more bytes", max_length) == result
    else:
        assert "\n" not in str(result)
    # Never more than max_length bytes to decide.
    if len(data) >= max_length:
        assert result is not None


V1_TOKENS = [
    b"PROXY",
    b"TCP4",
    b"TCP6",
    b"UNKNOWN",
    b"192.0.2.1",
    b"255.255.255.255",
    b"01.2.3.4",
    b"::1",
    b"2001:db8::1",
    b"::ffff:1.2.3.4",
    b"fe80::1%1",
    b"0",
    b"25",
    b"65535",
    b"65536",
    b"025",
    b"+1",
    b"",
    b"\xff",
]
V1_SEPARATORS = [b" "] * 6 + [b"  ", b"\t", b"\r\n", b"\n", b"\r", b""]


@st.composite
def v1_soup(draw: st.DrawFn) -> bytes:
    """Lines made of plausible and implausible fields, mostly single-spaced."""
    out = draw(st.sampled_from([b"PROXY "] * 4 + [b"PROXY", b""]))
    out += draw(st.sampled_from([b"TCP4 ", b"TCP6 ", b"UNKNOWN ", b"UNKNOWN", b""]))
    for token in draw(st.lists(st.sampled_from(V1_TOKENS), min_size=1, max_size=5)):
        out += token + draw(st.sampled_from(V1_SEPARATORS))
    return out + draw(st.sampled_from([b"\r\n", b"", b"\n", b"EHLO x\r\n"]))


@st.composite
def v2_soup(draw: st.DrawFn) -> bytes:
    command = draw(st.sampled_from([0x20, 0x21, 0x22, 0x11, 0x2F]))
    family = draw(st.sampled_from([0x00, 0x11, 0x12, 0x21, 0x22, 0x31, 0x32, 0x10, 0x41]))
    block = draw(st.binary(max_size=80))
    length = draw(st.one_of(st.just(len(block)), st.integers(0, 0xFFFF)))
    return V2_SIGNATURE + struct.pack("!BBH", command, family, length) + block


@st.composite
def valid_headers(draw: st.DrawFn) -> tuple[bytes, ProxyAddresses | None]:
    version = draw(st.sampled_from([1, 2]))
    ipv6 = draw(st.booleans())
    hosts = st.ip_addresses(v=6 if ipv6 else 4)
    source, dest = draw(hosts), draw(hosts)
    ports = st.integers(0, 65535)
    source_port, dest_port = draw(ports), draw(ports)

    def canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(address)

    expected = ProxyAddresses(canonical(source), source_port, canonical(dest), dest_port)
    if version == 1:
        family = b"TCP6" if ipv6 else b"TCP4"
        spelled = [
            draw(st.sampled_from([str(a), a.exploded, str(a).upper()])).encode()
            for a in (source, dest)
        ]
        numbers = b"%d %d" % (source_port, dest_port)
        wire = b"PROXY " + b" ".join([family, *spelled, numbers]) + b"\r\n"
        return wire, expected
    block_of = ipv6_block if ipv6 else ipv4_block
    tlvs = draw(st.lists(st.tuples(st.integers(0, 255), st.binary(max_size=40)), max_size=5))
    block = block_of(str(source), str(dest), source_port, dest_port)
    block += b"".join(tlv(tlv_type, value) for tlv_type, value in tlvs)
    return v2(PROXY, TCP6 if ipv6 else TCP4, block), expected


@st.composite
def mutated_headers(draw: st.DrawFn) -> bytes:
    """A valid header with one byte replaced, inserted or deleted, then maybe more bytes."""
    wire, _ = draw(valid_headers())
    index = draw(st.integers(0, len(wire) - 1))
    byte = bytes([draw(st.integers(0, 255))])
    edit = draw(st.sampled_from(["replace", "insert", "delete"]))
    if edit == "replace":
        wire = wire[:index] + byte + wire[index + 1 :]
    elif edit == "insert":
        wire = wire[:index] + byte + wire[index:]
    else:
        wire = wire[:index] + wire[index + 1 :]
    return wire + draw(st.binary(max_size=10))


ANY_INPUT = st.one_of(
    st.binary(max_size=200),
    st.binary(max_size=120).map(lambda rest: b"PROXY " + rest),
    st.binary(max_size=120).map(lambda rest: V2_SIGNATURE + rest),
    v1_soup(),
    v2_soup(),
    mutated_headers(),
)


@SETTINGS
@given(ANY_INPUT)
def test_any_input_is_a_header_an_error_or_a_valid_prefix(data: bytes) -> None:
    _check_any_input(data)


@SETTINGS
@given(ANY_INPUT)
def test_any_input_is_split_blind(data: bytes) -> None:
    assert_split_blind(data)


@SETTINGS
@given(ANY_INPUT, st.sampled_from([b"\x00", b"\x04", b"a", b" ", b"\r"]))
def test_max_length_bytes_always_decide(head: bytes, filler: bytes) -> None:
    for prefix in (V2_SIGNATURE, b"PROXY UNKNOWN ", b"PROXY TCP6 ", b""):
        _check_any_input(prefix + head + filler * MIN_MAX_LENGTH, max_length=MIN_MAX_LENGTH)


@SETTINGS
@given(valid_headers(), st.binary(max_size=20))
def test_generated_headers_parse_at_every_split(
    header: tuple[bytes, ProxyAddresses | None], trailer: bytes
) -> None:
    wire, expected = header
    result = parse_ok(wire + trailer)
    assert result.addresses == expected
    assert result.length == len(wire)


# -- cross-check with the proxy-protocol package (when installed) ------------------------------
