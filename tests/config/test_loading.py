"""Config loading: defaults, a full TOML file, and one actionable line per bad value."""

from __future__ import annotations

from pathlib import Path

import pytest

from trimail.config.loading import (
    ConfigError,
    RawConfig,
    read_toml,
    set_path,
    structure_config,
)
from trimail.config.model import (
    DeliveryConfig,
    DeliveryKind,
    LineEndings,
    ListenAddress,
    ServerConfig,
    Timeouts,
)
from trimail.protocol.limits import ProtocolLimits

FULL_TOML = """\
listen = ["127.0.0.1:0", "[::1]:2525"]
hostname = "mx.example.test"

[delivery]
backend = "discard"
maildir = "/var/mail/trimail"

[limits]
max_command_line = 1024
absurd_line = 131072
max_recipients = 50
max_message_size = 10485760
max_errors = 5

[timeouts]
command = 60
data = 30.5
data_min_rate = 0
data_total = 120.0
shutdown_grace = 2.5
"""


def load(tmp_path: Path, text: str) -> ServerConfig:
    path = tmp_path / "trimail.toml"
    path.write_text(text, encoding="utf-8")
    return structure_config(read_toml(path))


def config_error(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    message = str(caught.value)
    assert "\n" not in message, "a config error must be exactly one line"
    assert message.strip() == message
    return message


def test_empty_config_gives_the_defaults() -> None:
    config = structure_config({})
    assert config == ServerConfig()
    assert config.listen == (ListenAddress("127.0.0.1", 2525),)
    assert config.hostname is None
    assert config.delivery == DeliveryConfig(backend=DeliveryKind.MAILDIR, maildir=Path("maildir"))
    assert config.limits == ProtocolLimits()
    assert config.limits.max_recipients == 100
    assert config.limits.max_message_size == 25 * 1024 * 1024
    assert config.timeouts == Timeouts()
    assert config.timeouts.command == 300.0


def test_empty_toml_file_gives_the_defaults(tmp_path: Path) -> None:
    assert load(tmp_path, "") == ServerConfig()


def test_every_section_is_read_from_toml(tmp_path: Path) -> None:
    config = load(tmp_path, FULL_TOML)
    assert config == ServerConfig(
        listen=(ListenAddress("127.0.0.1", 0), ListenAddress("::1", 2525)),
        hostname="mx.example.test",
        delivery=DeliveryConfig(backend=DeliveryKind.DISCARD, maildir=Path("/var/mail/trimail")),
        limits=ProtocolLimits(
            max_command_line=1024,
            absurd_line=131072,
            max_recipients=50,
            max_message_size=10485760,
            max_errors=5,
        ),
        timeouts=Timeouts(
            command=60.0, data=30.5, data_min_rate=0.0, data_total=120.0, shutdown_grace=2.5
        ),
    )
    # Integers in float fields become floats, not ints that happen to compare equal.
    assert isinstance(config.timeouts.command, float)


def test_partial_sections_keep_other_defaults(tmp_path: Path) -> None:
    config = load(tmp_path, "[limits]\nmax_recipients = 7\n")
    assert config.limits == ProtocolLimits(max_recipients=7)
    assert config.timeouts == Timeouts()
    assert config.listen == ServerConfig().listen


BAD_VALUES = [
    # (TOML text, the error line must start with this, and contain this)
    ("[limits]\nmax_recipients = 0", "limits.max_recipients: ", ">= 1"),
    ("[limits]\nmax_recipients = -5", "limits.max_recipients: ", ">= 1"),
    ("[limits]\nmax_recipients = true", "limits.max_recipients: ", "integer"),
    ('[limits]\nmax_recipients = "10"', "limits.max_recipients: ", "integer"),
    ("[limits]\nmax_recipients = 1.5", "limits.max_recipients: ", "integer"),
    ("[limits]\nmax_message_size = 100", "limits.max_message_size: ", ">= 1024"),
    ("[limits]\nmax_command_line = 100", "limits.max_command_line: ", ">= 512"),
    ("[limits]\nmax_errors = 0", "limits.max_errors: ", ">= 1"),
    (
        "[limits]\nmax_command_line = 2048\nabsurd_line = 1024",
        "limits.absurd_line: ",
        "max_command_line",
    ),
    ("[limits]\nmax_recipient = 5", "limits: ", "max_recipient"),
    ('listen = ["nope"]', "listen[0]: ", "HOST:PORT"),
    ('listen = ["127.0.0.1:2525", "nope"]', "listen[1]: ", "'nope'"),
    ('listen = ["127.0.0.1:x"]', "listen[0]: ", "port"),
    ('listen = ["[::1]2525"]', "listen[0]: ", "[IPv6]:PORT"),
    ('listen = ["[::1]:99999"]', "listen[0]", "65535"),
    ("listen = [2525]", "listen[0]: ", "string"),
    ("listen = []", "listen: ", "at least one"),
    ('[delivery]\nbackend = "mbox"', "delivery.backend: ", "expected one of maildir, discard"),
    ("[delivery]\nbackend = 1", "delivery.backend: ", "expected one of maildir, discard"),
    ("[delivery]\nmaildir = 5", "delivery.maildir: ", "path"),
    ("[delivery]\nmailbox = 'x'", "delivery: ", "mailbox"),
    ("hostname = 5", "hostname: ", "string"),
    ("hostname = true", "hostname: ", "string"),
    ("[timeouts]\ncommand = 0", "timeouts.command: ", "> 0"),
    ("[timeouts]\ncommand = nan", "timeouts.command: ", "> 0"),
    ('[timeouts]\ncommand = "5"', "timeouts.command: ", "number"),
    ("[timeouts]\ndata = true", "timeouts.data: ", "number"),
    ("[timeouts]\ndata_min_rate = -1", "timeouts.data_min_rate: ", ">= 0"),
    ("[timeouts]\nshutdown_grace = -0.5", "timeouts.shutdown_grace: ", ">= 0"),
    ("[timeouts]\ncomand = 5", "timeouts: ", "comand"),
    ("bogus = 1", "config: ", "bogus"),
    ("limits = 5", "limits: ", ""),  # the message itself is unhelpful; the path is right
]


@pytest.mark.parametrize(("text", "prefix", "detail"), BAD_VALUES)
def test_bad_value_is_one_line_naming_the_field(
    tmp_path: Path, text: str, prefix: str, detail: str
) -> None:
    message = config_error(tmp_path, text + "\n")
    assert message.startswith(prefix)
    assert detail in message


def test_unknown_keys_are_all_named(tmp_path: Path) -> None:
    message = config_error(tmp_path, "zeta = 1\nalpha = 2\n")
    assert message.startswith("config: unknown key(s) ")
    assert "alpha" in message
    assert "zeta" in message


def test_structure_config_accepts_raw_mappings() -> None:
    raw: RawConfig = {"listen": ["[::1]:25"], "delivery": {"maildir": "/srv/mail"}}
    config = structure_config(raw)
    assert config.listen == (ListenAddress("::1", 25),)
    assert config.delivery.maildir == Path("/srv/mail")


def test_listen_that_is_not_an_array_names_listen(tmp_path: Path) -> None:
    assert config_error(tmp_path, "listen = 5\n").startswith("listen: ")


def test_listen_as_a_string_instead_of_an_array_is_reported_as_such(tmp_path: Path) -> None:
    message = config_error(tmp_path, 'listen = "127.0.0.1:2525"\n')
    assert message.startswith("listen: ")


def test_invalid_toml_names_the_config_option(tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text("[limits\nmax_recipients = 5\n")
    with pytest.raises(ConfigError) as caught:
        read_toml(path)
    message = str(caught.value)
    assert message.startswith("--config: ")
    assert str(path) in message
    assert "not valid TOML" in message
    assert "\n" not in message


def test_missing_file_names_the_config_option(tmp_path: Path) -> None:
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        read_toml(path)
    message = str(caught.value)
    assert message.startswith("--config: cannot read ")
    assert str(path) in message
    assert "\n" not in message


def test_directory_instead_of_file_names_the_config_option(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^--config: cannot read "):
        read_toml(tmp_path)


def test_non_utf8_file_names_the_config_option(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'hostname = "caf\xe9"\n')
    with pytest.raises(ConfigError, match=r"^--config: "):
        read_toml(path)


def test_set_path_creates_and_overrides_nested_tables() -> None:
    raw: RawConfig = {"limits": {"max_errors": 3}}
    set_path(raw, "limits.max_recipients", 9)
    set_path(raw, "timeouts.command", 1.5)
    set_path(raw, "hostname", "mx.test")
    assert raw == {
        "limits": {"max_errors": 3, "max_recipients": 9},
        "timeouts": {"command": 1.5},
        "hostname": "mx.test",
    }
    config = structure_config(raw)
    assert config.limits == ProtocolLimits(max_errors=3, max_recipients=9)


def test_set_path_refuses_to_descend_into_a_value() -> None:
    raw: RawConfig = {"limits": 5}
    with pytest.raises(ConfigError, match=r"^limits: expected a table$"):
        set_path(raw, "limits.max_recipients", 9)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("127.0.0.1:2525", "127.0.0.1", 2525),
        ("0.0.0.0:25", "0.0.0.0", 25),
        ("[::1]:2525", "::1", 2525),
        ("[2001:db8::25]:587", "2001:db8::25", 587),
        ("mail.example.org:25", "mail.example.org", 25),
        ("localhost:0", "localhost", 0),
        ("127.0.0.1:65535", "127.0.0.1", 65535),
    ],
)
def test_listen_address_round_trip(text: str, host: str, port: int) -> None:
    address = ListenAddress.parse(text)
    assert address == ListenAddress(host, port)
    assert str(address) == text
    assert ListenAddress.parse(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        "nope",
        "2525",
        ":2525",
        "127.0.0.1:",
        "127.0.0.1:x",
        "127.0.0.1:-1",
        "127.0.0.1:65536",
        "::1:2525",
        "[::1]2525",
        "[::1]:",
        "[not-ipv6]:25",
        "[127.0.0.1]:25",
    ],
)
def test_listen_address_parse_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        ListenAddress.parse(text)


def test_line_endings_default_to_crlf_and_accept_lf(tmp_path: Path) -> None:
    assert structure_config({}).delivery.line_endings is LineEndings.CRLF
    raw: RawConfig = {"delivery": {"line_endings": "lf"}}
    assert structure_config(raw).delivery.line_endings is LineEndings.LF
    message = config_error(tmp_path, '[delivery]\nline_endings = "cr"\n')
    assert message.startswith("delivery.line_endings: expected one of crlf, lf")
