"""``trimail serve``: bad flags or config exit 2 with one line; a real run stores and stops."""

from __future__ import annotations

import email.parser
import email.policy
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.serve_process import STARTUP_BOUND, free_port, serve_process
from tests.tls_certs import CertFiles, issue
from trimail.cli import build_parser, load_config, serve_command
from trimail.config.loading import ConfigError
from trimail.config.model import DeliveryKind, ListenAddress, ProxyConfig, Rate

#: A usage error never gets as far as binding a port; this bounds even a slow interpreter start.
RUN_BOUND = 30.0


def run_serve(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "trimail", "serve", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )


def assert_one_line_usage_error(result: subprocess.CompletedProcess[str], names: str) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.removesuffix("\n").split("\n")
    assert len(lines) == 1, result.stderr
    [line] = lines
    assert "error: " in line
    assert names in line
    assert "Traceback" not in line
    return line


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--max-recipients", "0"], "--max-recipients"),
        (["--max-recipients", "x"], "--max-recipients"),
        (["--max-recipients", "-3"], "--max-recipients"),
        (["--max-recipients"], "--max-recipients"),
        (["--max-message-size", "100"], "--max-message-size"),
        (["--max-errors", "1.5"], "--max-errors"),
        (["--listen", "nope"], "--listen"),
        (["--listen", "127.0.0.1:2525", "--listen", "[::1]:99999"], "--listen"),
        (["--delivery", "mbox"], "--delivery"),
        (["--line-endings", "cr"], "--line-endings"),
        (["--command-timeout", "0"], "--command-timeout"),
        (["--data-timeout", "soon"], "--data-timeout"),
        (["--data-min-rate", "-1"], "--data-min-rate"),
        (["--shutdown-grace", "nan"], "--shutdown-grace"),
        (["--workers", "0"], "--workers"),
        (["--workers", "9999"], "--workers"),
        (["--workers", "two"], "--workers"),
        (["--config", "missing.toml"], "--config"),
        (["--bogus-flag"], "--bogus-flag"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_flag_exits_2_with_one_line_naming_it(
    tmp_path: Path, args: list[str], names: str
) -> None:
    result = run_serve(tmp_path, *args)
    assert_one_line_usage_error(result, names)
    assert not (tmp_path / "maildir").exists(), "a usage error must not touch the disk"


def test_bad_delivery_lists_the_choices(tmp_path: Path) -> None:
    line = assert_one_line_usage_error(run_serve(tmp_path, "--delivery", "mbox"), "--delivery")
    assert "expected one of maildir, discard" in line


@pytest.mark.parametrize(
    ("toml", "names"),
    [
        ("bogus = 1\n", "bogus"),
        ("[limits]\nmax_recipient = 5\n", "max_recipient"),
        ("[limits]\nmax_recipients = 0\n", "limits.max_recipients"),
        ('listen = ["nope"]\n', "listen[0]"),
        ('[delivery]\nbackend = "mbox"\n', "delivery.backend"),
        ("[timeouts\ncommand = 5\n", "--config"),
    ],
    ids=["unknown-key", "unknown-nested-key", "bad-int", "bad-listen", "bad-choice", "not-toml"],
)
def test_bad_config_file_exits_2_with_one_line_naming_the_field(
    tmp_path: Path, toml: str, names: str
) -> None:
    (tmp_path / "trimail.toml").write_text(toml)
    result = run_serve(tmp_path, "--config", "trimail.toml")
    assert_one_line_usage_error(result, names)


def test_flag_into_a_config_value_that_is_not_a_table(tmp_path: Path) -> None:
    (tmp_path / "trimail.toml").write_text("limits = 5\n")
    result = run_serve(tmp_path, "--config", "trimail.toml", "--max-recipients", "3")
    assert_one_line_usage_error(result, "limits")


def test_non_utf8_config_file_exits_2_with_one_line(tmp_path: Path) -> None:
    (tmp_path / "trimail.toml").write_bytes(b'hostname = "caf\xe9"\n')
    result = run_serve(tmp_path, "--config", "trimail.toml")
    assert_one_line_usage_error(result, "--config")


def test_missing_subcommand_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trimail"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )
    assert_one_line_usage_error(result, "command")


# -- load_config in process: flags over TOML ------------------------------------------------


def write_config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "trimail.toml"
    path.write_text(text)
    return str(path)


def test_flags_override_the_config_file(tmp_path: Path) -> None:
    path = write_config(
        tmp_path,
        'listen = ["127.0.0.1:25"]\nhostname = "from.toml"\n'
        "[limits]\nmax_recipients = 0\nmax_errors = 7\n",
    )
    args = build_parser().parse_args(
        [
            "serve",
            "--config",
            path,
            "--max-recipients",
            "5",
            "--listen",
            "127.0.0.1:2525",
            "--listen",
            "[::1]:2526",
            "--hostname",
            "mx.test",
            "--delivery",
            "discard",
            "--command-timeout",
            "12",
        ]
    )
    config = load_config(args)
    assert config.limits.max_recipients == 5  # the flag replaced the invalid file value
    assert config.limits.max_errors == 7  # untouched file values stay
    assert config.listen == (ListenAddress("127.0.0.1", 2525), ListenAddress("::1", 2526))
    assert config.hostname == "mx.test"
    assert config.delivery.backend is DeliveryKind.DISCARD
    assert config.timeouts.command == 12.0


def test_error_in_the_file_names_the_field_even_when_flags_are_given(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[limits]\nmax_errors = 0\n")
    args = build_parser().parse_args(["serve", "--config", path, "--max-recipients", "5"])
    with pytest.raises(ConfigError, match=r"^limits\.max_errors \(--max-errors\): must be >= 1"):
        load_config(args)


def test_error_in_a_flag_names_the_flag_not_the_field(tmp_path: Path) -> None:
    path = write_config(tmp_path, "[limits]\nmax_recipients = 50\n")
    args = build_parser().parse_args(["serve", "--config", path, "--max-recipients", "0"])
    with pytest.raises(ConfigError, match=r"^--max-recipients: must be >= 1"):
        load_config(args)


def test_serve_command_reports_config_errors_and_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["serve", "--listen", "nope", "--maildir", str(tmp_path / "maildir")]
    )
    assert serve_command(args) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("trimail serve: error: --listen: expected HOST:PORT")
    assert captured.err.count("\n") == 1
    assert not (tmp_path / "maildir").exists()


# -- a real server process -----------------------------------------------------------------

MESSAGE = (
    b"From: alice@example.org\r\n"
    b"To: bob@example.com\r\n"
    b"Subject: cli happy path\r\n"
    b"\r\n"
    b"Hello.\r\n"
    b".A line that starts with a dot.\r\n"
    b"8-bit: \xc3\xa9\r\n"
)


def test_serve_stores_a_message_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    with serve_process(tmp_path) as server:
        assert "listening on 127.0.0.1:" in server.stderr
        with smtplib.SMTP(
            "127.0.0.1", server.port, local_hostname="client.test", timeout=STARTUP_BOUND
        ) as client:
            refused = client.sendmail(
                "alice@example.org", ["bob@example.com"], MESSAGE, mail_options=["BODY=8BITMIME"]
            )
            assert refused == {}
        [stored] = list((server.maildir / "new").iterdir())
        # Maildir name: time.MusecPpidQn_<queue id>.host
        queue_id = stored.name.split("_", 1)[1].split(".", 1)[0]
        data = stored.read_bytes()
        assert data.endswith(MESSAGE)  # dot-unstuffed, CRLF and 8-bit bytes intact
        trace = data[: -len(MESSAGE)]
        assert trace.startswith(b"Return-Path: <alice@example.org>\r\nReceived: from client.test")
        assert f"by mx.test (trimail) with ESMTP id {queue_id}\r\n".encode() in trace
        assert b"\tfor <bob@example.com>; " in trace
        headers = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
        assert headers["Subject"] == "cli happy path"
        assert list((server.maildir / "tmp").iterdir()) == []

        assert server.stop() == 0
        log = server.stderr
    assert f"message {queue_id} from 127.0.0.1:" in log
    assert f" accepted: size={len(MESSAGE)} recipients=1" in log
    assert "received SIGTERM" in log
    assert "stopped" in log


# -- TLS flags --------------------------------------------------------------------------------


def test_missing_certificate_file_exits_2_naming_tls_cert(tmp_path: Path) -> None:
    result = run_serve(tmp_path, "--tls-cert", "nope.pem")
    line = assert_one_line_usage_error(result, "--tls-cert")
    assert "nope.pem" in line


def test_a_bad_certificate_with_workers_exits_2_before_any_worker_starts(tmp_path: Path) -> None:
    first, second = issue(tmp_path / "a"), issue(tmp_path / "b")
    result = run_serve(
        tmp_path, "--workers", "2", "--tls-cert", str(first.cert), "--tls-key", str(second.key)
    )
    line = assert_one_line_usage_error(result, "--tls-cert")
    assert "not a usable PEM certificate and key" in line
    assert "worker" not in result.stderr


def test_key_that_does_not_match_exits_2(tmp_path: Path) -> None:
    first, second = issue(tmp_path / "a"), issue(tmp_path / "b")
    result = run_serve(tmp_path, "--tls-cert", str(first.cert), "--tls-key", str(second.key))
    line = assert_one_line_usage_error(result, "--tls-cert")
    assert "not a usable PEM certificate and key" in line


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--require-tls"], "tls.cert (--tls-cert): is needed to require TLS"),
        (["--listen-tls", "127.0.0.1:0"], "--listen-tls: needs a certificate"),
        (["--tls-key", "key.pem"], "tls.cert (--tls-cert): is needed when a key is given"),
        (["--tls-handshake-timeout", "0"], "--tls-handshake-timeout"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_tls_options_without_what_they_need_exit_2(
    tmp_path: Path, args: list[str], names: str
) -> None:
    assert_one_line_usage_error(run_serve(tmp_path, *args), names)


def _implicit_tls_name(port: int, certs: CertFiles, name: str) -> str:
    """Handshake with the implicit-TLS port, checking ``name``; return the greeting."""
    context = certs.client_context()
    with (
        socket.create_connection(("127.0.0.1", port), timeout=STARTUP_BOUND) as raw,
        context.wrap_socket(raw, server_hostname=name) as tls,
    ):
        return tls.recv(1024).decode()


def test_sighup_reloads_the_certificate_for_new_sessions(tmp_path: Path) -> None:
    first = issue(tmp_path / "certs", "old.mx.test")
    tls_port = free_port()
    with serve_process(
        tmp_path,
        "--tls-cert",
        str(first.cert),
        "--tls-key",
        str(first.key),
        "--listen-tls",
        f"127.0.0.1:{tls_port}",
    ) as server:
        assert _implicit_tls_name(tls_port, first, "old.mx.test").startswith("220 ")
        renewed = issue(tmp_path / "certs", "new.mx.test", ca=first.ca)
        server.process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + STARTUP_BOUND
        while "TLS certificate reloaded" not in server.stderr:
            assert time.monotonic() < deadline, server.stderr
            time.sleep(0.05)
        assert _implicit_tls_name(tls_port, renewed, "new.mx.test").startswith("220 ")
        with pytest.raises(ssl.SSLCertVerificationError):
            _implicit_tls_name(tls_port, first, "old.mx.test")
        assert server.stop() == 0
    assert "received SIGHUP" in server.stderr


# -- hardening flags --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "names"),
    [
        (["--max-connection-rate-per-ip", "30"], "--max-connection-rate-per-ip"),
        (["--max-message-rate-per-ip", "x/min"], "--max-message-rate-per-ip"),
        (["--max-connections", "0"], "--max-connections"),
        (["--limit-exempt", "not-a-network"], "--limit-exempt"),
        (["--proxy-protocol"], "proxy.trusted (--proxy-trusted)"),
        (["--proxy-protocol", "--proxy-trusted", "10.0.0.300/8"], "--proxy-trusted"),
        (["--greeting-delay", "-1"], "--greeting-delay"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_hardening_flags_exit_2(tmp_path: Path, args: list[str], names: str) -> None:
    assert_one_line_usage_error(run_serve(tmp_path, *args), names)


def test_hardening_flags_reach_the_config(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "serve",
            "--accept-domain",
            "example.org",
            "--accept-domain",
            "example.net",
            "--max-connection-rate-per-ip",
            "60/min",
            "--limit-exempt",
            "10.0.0.0/8",
            "--proxy-protocol",
            "--proxy-trusted",
            "192.0.2.0/24",
            "--greeting-delay",
            "3",
        ]
    )
    config = load_config(args)
    assert config.accept_domains == ("example.org", "example.net")
    assert config.admission.max_connection_rate_per_ip == Rate(60, 60.0)
    assert config.admission.exempt == ("10.0.0.0/8",)
    assert config.proxy == ProxyConfig(enabled=True, trusted=("192.0.2.0/24",))
    assert config.timeouts.greeting_delay == 3.0
