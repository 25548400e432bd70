"""parse_command, table by table: each valid line's typed command, each invalid line's reply."""

from __future__ import annotations

import string
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from trimail.protocol import command_parser
from trimail.protocol.addresses import (
    MAX_LOCAL_PART,
    MAX_PATH,
    AddressError,
    Mailbox,
    NonAsciiAddressError,
    parse_forward_path,
)
from trimail.protocol.command_parser import CommandError, parse_command
from trimail.protocol.commands import (
    Command,
    Data,
    Ehlo,
    Expn,
    Helo,
    Help,
    Mail,
    Noop,
    Quit,
    Rcpt,
    Rset,
    Vrfy,
)
from trimail.protocol.esmtp_params import BodyType, MailParams
from trimail.protocol.replies import Reply

Status = tuple[int, str]

SYNTAX = (501, "5.5.4")
UNKNOWN = (500, "5.5.2")
BAD_SENDER = (501, "5.1.7")
BAD_RECIPIENT = (501, "5.1.3")
NON_ASCII = (553, "5.6.7")
UNKNOWN_PARAM = (555, "5.5.4")


def refusal(line: bytes, *, smtputf8: bool = False) -> Reply:
    with pytest.raises(CommandError) as info:
        parse_command(line, smtputf8=smtputf8)
    return info.value.reply


def refused_with(line: bytes, *, smtputf8: bool = False) -> Status:
    reply = refusal(line, smtputf8=smtputf8)
    assert reply.status is not None
    return reply.code, reply.status


def mail(sender: Mailbox | None, **params: int | BodyType | bool) -> Mail:
    size = params.get("size")
    body = params.get("body")
    assert size is None or isinstance(size, int)
    assert body is None or isinstance(body, BodyType)
    return Mail(sender, MailParams(size=size, body=body, smtputf8=params.get("smtputf8") is True))


A = Mailbox("a", "example.org")


# -- every verb, in any case ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "command"),
    [
        (b"EHLO client.example", Ehlo("client.example")),
        (b"ehlo client.example", Ehlo("client.example")),
        (b"EhLo client.example", Ehlo("client.example")),
        (b"EHLO   client.example  ", Ehlo("client.example")),
        (b"EHLO [192.0.2.1]", Ehlo("[192.0.2.1]")),
        (b"HELO client.example", Helo("client.example")),
        (b"helo client.example", Helo("client.example")),
        (b"MAIL FROM:<a@example.org>", mail(A)),
        (b"mail from:<a@example.org>", mail(A)),
        (b"Mail From:<a@example.org>", mail(A)),
        (b"MAIL FROM: <a@example.org>", mail(A)),
        (b"MAIL FROM:<a@example.org> ", mail(A)),
        (b"RCPT TO:<a@example.org>", Rcpt(A)),
        (b"rcpt to:<a@example.org>", Rcpt(A)),
        (b"RCPT TO: <a@example.org>", Rcpt(A)),
        (b"DATA", Data()),
        (b"data", Data()),
        (b"DATA ", Data()),
        (b"RSET", Rset()),
        (b"rset", Rset()),
        (b"QUIT", Quit()),
        (b"quit", Quit()),
        (b"NOOP", Noop()),
        (b"noop", Noop()),
        (b"NOOP ignored argument", Noop()),
        (b"VRFY", Vrfy("")),
        (b"VRFY user", Vrfy("user")),
        (b"vrfy user", Vrfy("user")),
        (b"EXPN list", Expn("list")),
        (b"expn list", Expn("list")),
        (b"HELP", Help("")),
        (b"help MAIL", Help("MAIL")),
    ],
)
def test_valid_command(line: bytes, command: Command) -> None:
    assert parse_command(line, smtputf8=False) == command


@pytest.mark.parametrize(
    "line",
    [
        b"",
        b" ",
        b"FOO",
        b"MAILFROM:<a@example.org>",
        b"AUTH PLAIN AGFAYg==",
        b"BDAT 10 LAST",
        b"TURN",
        b"ETRN example.org",
        b" NOOP",
        b"NO OP",
    ],
)
def test_unknown_verb_is_500_5_5_2(line: bytes) -> None:
    assert refused_with(line) == UNKNOWN


@pytest.mark.parametrize("verb", [b"DATA", b"RSET", b"QUIT", b"data", b"rset", b"quit"])
@pytest.mark.parametrize("argument", [b" x", b" <a@example.org>", b"  now  "])
def test_data_rset_quit_take_no_argument(verb: bytes, argument: bytes) -> None:
    reply = refusal(verb + argument)
    assert (reply.code, reply.status) == SYNTAX
    assert reply.text == f"Syntax: {verb.decode().upper()}"


@pytest.mark.parametrize(
    "line", [b"EHLO", b"HELO", b"EHLO ", b"HELO    ", b"EHLO a b", b"HELO a b"]
)
def test_helo_and_ehlo_need_exactly_one_name(line: bytes) -> None:
    assert refused_with(line) == SYNTAX


@pytest.mark.parametrize(
    "line",
    [
        b"\xff",
        b"NOOP \xff",
        b"MAIL FROM:<\xc3@example.org>",
        b"EHLO \xed\xa0\x80",  # an encoded surrogate is not UTF-8
        b"EHLO \xc0\xae",  # overlong encoding of "."
        b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    ],
)
def test_invalid_utf8_is_500_5_5_2(line: bytes) -> None:
    reply = refusal(line)
    assert (reply.code, reply.status) == UNKNOWN
    assert "UTF-8" in reply.text


@pytest.mark.parametrize(
    "line",
    [
        b"NOOP\x00",
        b"MAIL FROM:<a@example.org>\x00",
        b"EHLO a\tb",
        b"EHLO \tclient",
        b"NOOP\x7f",
        b"NOOP \x1b[31mred",
        b"RSET\r",
        b"MAIL FROM:<a@example.org>\rRCPT TO:<b@example.org>",
        "EHLO a\u2028b".encode(),
        "RCPT TO:<a@example.org>\u00a0".encode(),
        "NOOP \u200b".encode(),
    ],
)
def test_control_characters_are_501(line: bytes) -> None:
    reply = refusal(line)
    assert (reply.code, reply.status) == SYNTAX
    assert "control characters" in reply.text


# -- MAIL and RCPT path grammar ------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "mailbox"),
    [
        ("<a@example.org>", A),
        ("<user+tag@mail.example.org>", Mailbox("user+tag", "mail.example.org")),
        ("<first.last@example.org>", Mailbox("first.last", "example.org")),
        ("<!#$%&'*+-/=?^_`{|}~@example.org>", Mailbox("!#$%&'*+-/=?^_`{|}~", "example.org")),
        ("<a@EXAMPLE.ORG>", Mailbox("a", "EXAMPLE.ORG")),
        ("<a@x>", Mailbox("a", "x")),
        ("<a@a-b.c0>", Mailbox("a", "a-b.c0")),
        ('<"john doe"@example.org>', Mailbox('"john doe"', "example.org")),
        ('<"a>b"@example.org>', Mailbox('"a>b"', "example.org")),
        ('<"<>"@example.org>', Mailbox('"<>"', "example.org")),
        ('<"a\\"b"@example.org>', Mailbox('"a\\"b"', "example.org")),
        ('<"a\\\\b"@example.org>', Mailbox('"a\\\\b"', "example.org")),
        ('<"a@b"@example.org>', Mailbox('"a@b"', "example.org")),
        ('<""@example.org>', Mailbox('""', "example.org")),
        ("<a@[192.0.2.1]>", Mailbox("a", "[192.0.2.1]")),
        ("<a@[255.255.255.255]>", Mailbox("a", "[255.255.255.255]")),
        ("<a@[IPv6:2001:db8::1]>", Mailbox("a", "[IPv6:2001:db8::1]")),
        ("<a@[ipv6:::1]>", Mailbox("a", "[ipv6:::1]")),
        ("<a@[IPv6:::ffff:192.0.2.1]>", Mailbox("a", "[IPv6:::ffff:192.0.2.1]")),
        ("<@relay.example:a@example.org>", A),
        ("<@relay.example,@hop2.example:a@example.org>", A),
        ("<@relay.example,@hop2.example,@hop3:a@example.org>", A),
    ],
)
@pytest.mark.parametrize("verb", ["MAIL FROM:", "RCPT TO:"])
def test_valid_path(verb: str, path: str, mailbox: Mailbox) -> None:
    command = parse_command(f"{verb}{path}".encode(), smtputf8=False)
    expected = mail(mailbox) if verb.startswith("MAIL") else Rcpt(mailbox)
    assert command == expected


def test_null_sender() -> None:
    assert parse_command(b"MAIL FROM:<>", smtputf8=False) == mail(None)
    assert parse_command(b"MAIL FROM:<> SIZE=10", smtputf8=False) == mail(None, size=10)


def test_null_recipient_is_refused() -> None:
    assert refused_with(b"RCPT TO:<>") == BAD_RECIPIENT


@pytest.mark.parametrize("path", ["<Postmaster>", "<postmaster>", "<POSTMASTER>", "<PostMaster>"])
def test_bare_postmaster_recipient(path: str) -> None:
    command = parse_command(f"RCPT TO:{path}".encode(), smtputf8=False)
    assert command == Rcpt(Mailbox(path[1:-1], ""))
    assert str(Mailbox(path[1:-1], "")) == path[1:-1]


def test_postmaster_with_domain_is_an_ordinary_mailbox() -> None:
    command = parse_command(b"RCPT TO:<Postmaster@example.org>", smtputf8=False)
    assert command == Rcpt(Mailbox("Postmaster", "example.org"))


@pytest.mark.parametrize(
    "line", [b"MAIL FROM:<Postmaster>", b"MAIL FROM:<@relay.example:postmaster>"]
)
def test_bare_postmaster_is_not_a_sender(line: bytes) -> None:
    assert refused_with(line) == BAD_SENDER


@pytest.mark.parametrize(
    "path",
    [
        "<a@>",
        "<@example.org>",
        "<a>",
        "<a@@example.org>",
        "<a@example..org>",
        "<a@.example.org>",
        "<a@example.org.>",
        "<a@-example.org>",
        "<a@example-.org>",
        "<a@exa_mple.org>",
        "<.a@example.org>",
        "<a.@example.org>",
        "<a..b@example.org>",
        '<a"b"@example.org>',
        "<a@[192.0.2.256]>",
        "<a@[192.0.2]>",
        "<a@[01.2.3.4]>",
        "<a@[192.0.2.1.5]>",
        "<a@[example.org]>",
        "<a@[]>",
        "<a@[IPv6:zz::1]>",
        "<a@[IPv6:1:2:3:4:5:6:7:8:9]>",
        "<a@[IPv6:192.0.2.1]>",
        "<a@[IPv6:]>",
        "<a@[IPv4:192.0.2.1]>",
        "<a@[x-tag:something]>",
        "<a@[192.0.2.1>",
        "<@:a@example.org>",
        "<@relay.example,a@example.org>",
        "<@relay.example;@hop:a@example.org>",
        "<@relay..example:a@example.org>",
        "<@[192.0.2.1]:a@example.org>",
        "<@relay.example:>",
        "<@relay.example:postmaster@>",
    ],
)
@pytest.mark.parametrize(
    ("verb", "expected"), [("MAIL FROM:", BAD_SENDER), ("RCPT TO:", BAD_RECIPIENT)]
)
def test_invalid_address(verb: str, expected: Status, path: str) -> None:
    reply = refusal(f"{verb}{path}".encode())
    assert (reply.code, reply.status) == expected
    assert reply.text.startswith(("Bad sender address syntax:", "Bad recipient address syntax:"))


@pytest.mark.parametrize("path", ["<a@[IPv6:fe80::1%eth0]>", "<a@[IPv6:fe80::1%..x]>"])
def test_ipv6_literal_with_zone_id_is_refused(path: str) -> None:
    assert refused_with(f"RCPT TO:{path}".encode()) == BAD_RECIPIENT


@pytest.mark.parametrize(
    "line",
    [
        b"MAIL",
        b"MAIL FROM",
        b"MAIL FROM:",
        b"MAIL FROM:a@example.org",
        b"MAIL FROM:<a@example.org",
        b"MAIL FROM:a@example.org>",
        b"MAIL FROM:<<a@example.org>>",
        b"MAIL FROM:<a b@example.org>",
        b"MAIL FROM:<a@example.org>SIZE=10",
        b"MAIL FROM:<a@example.org><b@example.org>",
        b"MAIL TO:<a@example.org>",
        b"MAIL FRM:<a@example.org>",
        b"MAIL FROM :<a@example.org>",
        b"MAIL  FROM:<a@example.org>",
        b'MAIL FROM:<"a\\>',
        b'MAIL FROM:<"unterminated@example.org>',
    ],
)
def test_mail_syntax_error(line: bytes) -> None:
    reply = refusal(line)
    assert (reply.code, reply.status) == SYNTAX
    assert reply.text == "Syntax: MAIL FROM:<address> [parameters]"


@pytest.mark.parametrize(
    "line",
    [
        b"RCPT",
        b"RCPT TO",
        b"RCPT TO:b@example.org",
        b"RCPT FROM:<b@example.org>",
        b"RCPT TO:<b@example.org",
        b"RCPT TO:<b@example.org>NOTIFY=NEVER",
    ],
)
def test_rcpt_syntax_error(line: bytes) -> None:
    reply = refusal(line)
    assert (reply.code, reply.status) == SYNTAX
    assert reply.text == "Syntax: RCPT TO:<address>"


# -- lengths (RFC 5321 4.5.3.1.1-3) -------------------------------------------------------


def test_local_part_of_64_octets_is_accepted_65_is_not() -> None:
    local = "l" * MAX_LOCAL_PART
    assert parse_command(f"RCPT TO:<{local}@example.org>".encode(), smtputf8=False) == Rcpt(
        Mailbox(local, "example.org")
    )
    assert refused_with(f"RCPT TO:<{local}x@example.org>".encode()) == BAD_RECIPIENT
    assert refused_with(f"MAIL FROM:<{local}x@example.org>".encode()) == BAD_SENDER
    with pytest.raises(AddressError, match="local part too long"):
        parse_forward_path(f"<{local}x@example.org>", utf8=False)


def test_quoted_local_part_counts_its_quotes() -> None:
    inner = "q" * (MAX_LOCAL_PART - 2)
    assert parse_forward_path(f'<"{inner}"@example.org>', utf8=False) == Mailbox(
        f'"{inner}"', "example.org"
    )
    with pytest.raises(AddressError, match="local part too long"):
        parse_forward_path(f'<"{inner}x"@example.org>', utf8=False)


def test_local_part_length_is_counted_in_octets() -> None:
    local = "\u00e9" * 32  # 32 characters, 64 octets
    assert parse_forward_path(f"<{local}@example.org>", utf8=True) == Mailbox(local, "example.org")
    with pytest.raises(AddressError, match="local part too long"):
        parse_forward_path(f"<{local}e@example.org>", utf8=True)


def _domain_of(length: int) -> str:
    """A syntactically valid domain of exactly ``length`` octets."""
    domain = ".".join(["d" * 63] * 5)[:length]
    return domain[:-2] + ".d" if domain.endswith(".") else domain


def test_path_of_256_octets_is_accepted_257_is_not() -> None:
    domain = _domain_of(MAX_PATH - len("<a@>"))
    path = f"<a@{domain}>"
    assert len(path) == MAX_PATH
    assert parse_command(f"RCPT TO:{path}".encode(), smtputf8=False) == Rcpt(Mailbox("a", domain))
    longer = f"<ab@{domain}>"
    assert refused_with(f"RCPT TO:{longer}".encode()) == BAD_RECIPIENT
    assert refused_with(f"MAIL FROM:{longer}".encode()) == BAD_SENDER
    with pytest.raises(AddressError, match="path too long"):
        parse_forward_path(longer, utf8=False)


def test_path_length_is_counted_in_octets() -> None:
    domain = _domain_of(MAX_PATH - len("<\u00e9@>") - 1)
    path = f"<\u00e9@{domain}>"  # the e-acute is two octets
    assert len(path.encode()) == MAX_PATH
    assert parse_forward_path(path, utf8=True) == Mailbox("\u00e9", domain)
    with pytest.raises(AddressError, match="path too long"):
        parse_forward_path(f"<\u00e9@{domain}d>", utf8=True)


@pytest.mark.parametrize("verb", ["MAIL FROM:", "RCPT TO:"])
def test_domain_over_255_octets_is_refused(verb: str) -> None:
    domain = _domain_of(256)
    assert len(domain) == 256
    expected = BAD_SENDER if verb.startswith("MAIL") else BAD_RECIPIENT
    assert refused_with(f"{verb}<a@{domain}>".encode()) == expected
    with pytest.raises(AddressError):
        parse_forward_path(f"<a@{domain}>", utf8=False)


# -- UTF-8 addresses (RFC 6531) -----------------------------------------------------------

UTF8_PATHS = [
    "<\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae@\u03c0\u03b1\u03c1\u03ac\u03b4\u03b5\u03b9\u03b3\u03bc\u03b1.\u03b4\u03bf\u03ba\u03b9\u03bc\u03ae>",
    "<\u7528\u6237@\u4f8b\u5b50.\u5e7f\u544a>",
    "<ascii@b\u00fccher.example>",
    "<j\u00f6rg@example.org>",
    '<"\u00e9 \u00e9"@example.org>',
]


@pytest.mark.parametrize("path", UTF8_PATHS)
def test_utf8_sender_needs_smtputf8(path: str) -> None:
    reply = refusal(f"MAIL FROM:{path}".encode())
    assert (reply.code, reply.status) == NON_ASCII
    command = parse_command(f"MAIL FROM:{path} SMTPUTF8".encode(), smtputf8=False)
    assert isinstance(command, Mail)
    assert command.params.smtputf8
    assert command.sender is not None
    assert f"<{command.sender}>" == path


@pytest.mark.parametrize("path", UTF8_PATHS)
def test_utf8_recipient_needs_an_smtputf8_transaction(path: str) -> None:
    assert refused_with(f"RCPT TO:{path}".encode(), smtputf8=False) == NON_ASCII
    command = parse_command(f"RCPT TO:{path}".encode(), smtputf8=True)
    assert isinstance(command, Rcpt)
    assert f"<{command.recipient}>" == path


def test_utf8_check_comes_before_the_grammar() -> None:
    with pytest.raises(NonAsciiAddressError):
        parse_forward_path("<\u00e9>", utf8=False)
    with pytest.raises(AddressError) as info:
        parse_forward_path("<\u00e9>", utf8=True)
    assert not isinstance(info.value, NonAsciiAddressError)


@pytest.mark.parametrize("path", ["<a@\u00e9-.example>", "<a@[\u00e9]>", "<\u00e9..x@example.org>"])
def test_utf8_addresses_still_follow_the_grammar(path: str) -> None:
    reply = refusal(f"MAIL FROM:{path} SMTPUTF8".encode())
    assert (reply.code, reply.status) == BAD_SENDER


# -- ESMTP parameters ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (b"", MailParams()),
        (b" SIZE=0", MailParams(size=0)),
        (b" SIZE=12345", MailParams(size=12345)),
        (b" size=12345", MailParams(size=12345)),
        (b" SIZE=" + b"9" * 20, MailParams(size=int("9" * 20))),
        (b" BODY=7BIT", MailParams(body=BodyType.SEVEN_BIT)),
        (b" BODY=8BITMIME", MailParams(body=BodyType.EIGHT_BIT_MIME)),
        (b" body=8bitmime", MailParams(body=BodyType.EIGHT_BIT_MIME)),
        (b" SMTPUTF8", MailParams(smtputf8=True)),
        (b" smtputf8", MailParams(smtputf8=True)),
        (
            b" SIZE=100 BODY=8BITMIME SMTPUTF8",
            MailParams(size=100, body=BodyType.EIGHT_BIT_MIME, smtputf8=True),
        ),
        (
            b"   SMTPUTF8   BODY=7BIT  SIZE=1 ",
            MailParams(size=1, body=BodyType.SEVEN_BIT, smtputf8=True),
        ),
    ],
)
def test_mail_parameters(params: bytes, expected: MailParams) -> None:
    assert parse_command(b"MAIL FROM:<a@example.org>" + params, smtputf8=False) == Mail(A, expected)


@pytest.mark.parametrize(
    "params",
    [b"FOO", b"FOO=bar", b"AUTH=<>", b"RET=HDRS", b"ENVID=abc", b"REQUIRETLS", b"SIZE=1 X-TRACE=1"],
)
def test_unknown_mail_parameter_is_555(params: bytes) -> None:
    assert refused_with(b"MAIL FROM:<a@example.org> " + params) == UNKNOWN_PARAM


@pytest.mark.parametrize("params", [b"NOTIFY=NEVER", b"ORCPT=rfc822;a@example.org", b"SIZE=10"])
def test_rcpt_takes_no_parameters(params: bytes) -> None:
    assert refused_with(b"RCPT TO:<a@example.org> " + params) == UNKNOWN_PARAM


@pytest.mark.parametrize("params", [b"=x", b"-X=1", b"X_Y=1", b"NOTIFY=NEVER =x"])
def test_malformed_rcpt_parameter_is_501(params: bytes) -> None:
    assert refused_with(b"RCPT TO:<a@example.org> " + params) == SYNTAX


@pytest.mark.parametrize(
    "params",
    [
        b"SIZE=1 SIZE=2",
        b"SIZE=1 size=1",
        b"BODY=7BIT BODY=8BITMIME",
        b"SMTPUTF8 SMTPUTF8",
        b"SMTPUTF8 smtputf8",
        b"FOO=1 FOO=2",
    ],
)
def test_duplicate_parameter_is_501(params: bytes) -> None:
    reply = refusal(b"MAIL FROM:<a@example.org> " + params)
    assert (reply.code, reply.status) == SYNTAX
    assert "duplicate parameter" in reply.text


@pytest.mark.parametrize(
    "params",
    [
        b"SIZE",
        b"SIZE=",
        b"SIZE=abc",
        b"SIZE=-1",
        b"SIZE=+1",
        b"SIZE=1.5",
        b"SIZE=1e3",
        b"SIZE=0x10",
        b"SIZE= 1",
        b"SIZE=" + b"9" * 21,
        "SIZE=\uff11\uff12".encode(),  # fullwidth digits
        "SIZE=\u0661".encode(),  # Arabic-Indic digit one
    ],
)
def test_malformed_size_is_501(params: bytes) -> None:
    assert refused_with(b"MAIL FROM:<a@example.org> " + params) == SYNTAX


@pytest.mark.parametrize(
    "params",
    [b"BODY", b"BODY=", b"BODY=BINARYMIME", b"BODY=8BIT", b"BODY=7BIT8BITMIME", b"SMTPUTF8=yes"],
)
def test_malformed_body_or_smtputf8_is_501(params: bytes) -> None:
    assert refused_with(b"MAIL FROM:<a@example.org> " + params) == SYNTAX


@pytest.mark.parametrize("params", [b"=1", b"-SIZE=1", b"SI_ZE=1", b"SIZE==1 =2"])
def test_malformed_keyword_is_501(params: bytes) -> None:
    reply = refusal(b"MAIL FROM:<a@example.org> " + params)
    assert (reply.code, reply.status) == SYNTAX
    assert "malformed parameter" in reply.text


# -- verbs and keywords are ASCII ---------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["qu\u0131t", "QU\u0131T", "r\u017fet", "ma\u0131l from:<a@example.org>"],
)
def test_non_ascii_lookalike_verbs_are_unknown(line: str) -> None:
    assert refused_with(line.encode()) == UNKNOWN


def test_non_ascii_lookalike_body_value_is_refused() -> None:
    assert refused_with("MAIL FROM:<a@example.org> BODY=8b\u0131tm\u0131me".encode()) == SYNTAX


# -- the fast path for common MAIL and RCPT lines ------------------------------------------


def general_outcome(line: bytes, *, smtputf8: bool) -> Command | Reply:
    """What ``parse_command`` answers with its fast path turned off."""
    with (
        mock.patch.object(command_parser, "_parse_plain_mail", return_value=None),
        mock.patch.object(command_parser, "_parse_plain_rcpt", return_value=None),
    ):
        return outcome(line, smtputf8=smtputf8)


def outcome(line: bytes, *, smtputf8: bool) -> Command | Reply:
    try:
        return parse_command(line, smtputf8=smtputf8)
    except CommandError as exc:
        return exc.reply


@pytest.mark.parametrize(
    ("argument", "plain"),
    [
        ("FROM:<alice@example.org>", True),
        ("from:<alice@example.org> size=1024", True),
        ("FROM:  <a.b+c@mail-1.example.org> SIZE=0001", True),
        ("FROM:<alice@example.org>  SIZE=1024", False),  # two spaces: the general path
        ("FROM:<alice@example.org> SIZE=1024 ", False),
        ("FROM:<alice@example.org> BODY=8BITMIME", False),
        ('FROM:<"a b"@example.org>', False),
        ("FROM:<a@[192.0.2.1]>", False),
        ("FROM:<>", False),
        ("FROM:<a@example.org> SIZE=\u0661", False),
        ("FROM:<a@example.org> \u017fIZE=1", False),  # long s: no ASCII case folding
        ("FROM:<" + "a" * 65 + "@example.org>", False),  # too long: the general path says so
    ],
)
def test_plain_mail_form(argument: str, plain: bool) -> None:
    assert (command_parser._parse_plain_mail(argument) is not None) is plain
    line = f"MAIL {argument}".encode()
    assert outcome(line, smtputf8=False) == general_outcome(line, smtputf8=False)


@pytest.mark.parametrize(
    ("argument", "plain"),
    [
        ("TO:<bob@example.com>", True),
        ("to: <bob@EXAMPLE.com>", True),
        ("TO:<Postmaster>", False),
        ("TO:<bob@example.com> NOTIFY=NEVER", False),
        ("TO:<@relay.example:bob@example.com>", False),
        ("TO:<b\u00f6b@example.com>", False),
        ("TO:<bob@" + "a" * 250 + ".com>", False),
    ],
)
def test_plain_rcpt_form(argument: str, plain: bool) -> None:
    assert (command_parser._parse_plain_rcpt(argument) is not None) is plain
    line = f"RCPT {argument}".encode()
    for smtputf8 in (False, True):
        assert outcome(line, smtputf8=smtputf8) == general_outcome(line, smtputf8=smtputf8)


_ADDRESS_PIECES = st.sampled_from(
    ["a", "Z", "0", "-", ".", "..", "_", "+", "'", "@", "@@", '"', "\\", " ", "[", "]",
     ":", ",", "<", ">", "=", "\u00e9", "\u017f", "\u0131", "x" * 63, "y" * 200]
)  # fmt: skip
_odd_text = st.lists(_ADDRESS_PIECES, max_size=8).map("".join)
_ATEXT = string.ascii_letters + string.digits + "!#$%&'*+-/=?^_`{|}~"
_atom = st.text(_ATEXT, min_size=1, max_size=12) | st.sampled_from(["x" * 64, "y" * 63])
_label = st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
# Mostly plausible addresses (what the fast path takes), sometimes near misses and oddities.
_local = st.one_of(
    st.lists(_atom, min_size=1, max_size=4).map(".".join),
    st.lists(_atom, min_size=1, max_size=4).map(".".join),
    _odd_text,
)
_domain = st.one_of(
    st.lists(_label | st.sampled_from(["a" * 63, "b" * 200, "-a", "a-", "\u00e9"]), min_size=1,
             max_size=4).map(".".join),
    st.lists(_label, min_size=1, max_size=4).map(".".join),
    _odd_text,
)  # fmt: skip
_SIZE_VALUES = st.sampled_from(["0", "1024", "007", "9" * 20, "9" * 21, "", "1a", "\u0661", "-1"])
_PREFIXES = {
    "MAIL": [
        "FROM:",
        "FROM:",
        "from:",
        "FrOm:",
        "FROM: ",
        "FROM:  ",
        "FROM :",
        "TO:",
        "\u017fROM:",
    ],
    "RCPT": ["TO:", "TO:", "to:", "To:  ", "TO :", "FROM:"],
}
_SUFFIXES = st.sampled_from(["", "", "", " ", "  ", " SMTPUTF8", " BODY=8BITMIME", " X=1", ">"])


@st.composite
def _mail_or_rcpt_line(draw: st.DrawFn) -> bytes:
    verb = draw(st.sampled_from(["MAIL", "RCPT"]))
    prefix = draw(st.sampled_from(_PREFIXES[verb]))
    path = f"<{draw(_local)}@{draw(_domain)}>" if draw(st.integers(0, 9)) else f"<{draw(_local)}>"
    size = ""
    if draw(st.booleans()):
        size = draw(st.sampled_from([" SIZE=", " size=", " SIZE=", "  SIZE=", " SIZE"]))
        size += draw(_SIZE_VALUES)
    verb = verb.lower() if draw(st.integers(0, 4)) == 0 else verb
    return f"{verb} {prefix}{path}{size}{draw(_SUFFIXES)}".encode()


@settings(
    max_examples=1500, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(_mail_or_rcpt_line(), st.booleans())
def test_fast_path_answers_exactly_as_the_general_path(line: bytes, smtputf8: bool) -> None:
    assert outcome(line, smtputf8=smtputf8) == general_outcome(line, smtputf8=smtputf8)
