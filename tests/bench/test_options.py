"""Flag checking: one line naming the flag, exit 2, before anything touches the network."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from trimail.bench.cli import build_parser, main, raw_options
from trimail.bench.options import (
    BenchOptions,
    Delivery,
    OptionError,
    RawOptions,
    build_options,
    split_evenly,
    worker_argv,
)
from trimail.config.model import ListenAddress

#: Bounds an interpreter start in the one subprocess test.
RUN_BOUND = 30.0


def usage_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    try:
        status = main(list(args))
    except SystemExit as exc:  # argparse's own errors (unknown flag, missing value)
        status = exc.code if isinstance(exc.code, int) else -1
    assert status == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.removesuffix("\n").split("\n")
    assert len(lines) == 1, captured.err
    # argparse reports an unknown flag from the top-level parser ("trimail: error: ...").
    assert lines[0].startswith(("trimail bench: error: ", "trimail: error: "))
    assert "Traceback" not in lines[0]
    return lines[0]


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--sessions", "0"], "--sessions: must be >= 1"),
        (["--sessions", "x"], "--sessions: must be an integer"),
        (["--sessions", "-3"], "--sessions"),
        (["--messages", "0"], "--messages: must be >= 1"),
        (["--messages", "1.5"], "--messages"),
        (["--duration", "0"], "--duration: must be > 0"),
        (["--duration", "nan"], "--duration"),
        (["--duration", "700"], "--duration: must be <= 600"),
        (["--duration", "5", "--messages", "10"], "--duration"),
        (["--max-seconds", "inf"], "--max-seconds"),
        (["--size", "10"], "--size: must be >="),
        (["--size", "999999999999"], "--size"),
        (["--recipients", "0"], "--recipients"),
        (["--rate", "0"], "--rate: must be > 0"),
        (["--rate", "-5"], "--rate"),
        (["--workers", "3", "--sessions", "2"], "--workers: must be <= --sessions"),
        (["--workers", "0"], "--workers"),
        (["--timeout", "0"], "--timeout"),
        (["--target", "nope"], "--target"),
        (["--target", "127.0.0.1:0"], "--target"),
        (["--target", "127.0.0.1:70000"], "--target"),
        (["--delivery", "mbox"], "--delivery"),
        (["--target", "127.0.0.1:25", "--delivery", "discard"], "--delivery"),
        (["--target", "127.0.0.1:25", "--serve-arg=--max-errors=3"], "--serve-arg"),
        (["--starttls"], "--starttls"),
        (["--tls-ca", "ca.pem"], "--tls-ca"),
        (["--bogus"], "--bogus"),
        (["--sessions"], "--sessions"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_bad_flag_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str], args: list[str], flag: str
) -> None:
    assert flag in usage_error(capsys, *args)


@pytest.mark.parametrize("flag", ["--from", "--to"])
@pytest.mark.parametrize(
    "address",
    [
        "a@example.org\r\nRCPT TO:<victim@example.net>",
        "a@example.org\nDATA",
        "a@exam\rple.org",
        "a\x00@example.org",
        "a@example.org\x7f",
        "a@example.org\t",
    ],
)
def test_control_characters_in_addresses_are_refused(
    capsys: pytest.CaptureFixture[str], flag: str, address: str
) -> None:
    line = usage_error(capsys, flag, address)
    assert f"{flag}: must not contain" in line
    assert "\r" not in line


@pytest.mark.parametrize("flag", ["--from", "--to"])
@pytest.mark.parametrize(
    "address",
    ["not an address", "a@", "@example.org", "a@b@c", "<a@example.org", "a>@example.org",
     "bé@example.org", "a@exa_mple.org"],
)  # fmt: skip
def test_addresses_that_do_not_look_valid_are_refused(
    capsys: pytest.CaptureFixture[str], flag: str, address: str
) -> None:
    assert f"{flag}: " in usage_error(capsys, flag, address)


def test_valid_addresses_are_kept_without_brackets() -> None:
    options = build_options(RawOptions(mail_from="<>", rcpt_to="<Postmaster>"))
    assert (options.mail_from, options.rcpt_to) == ("", "Postmaster")
    options = build_options(RawOptions(mail_from="a.b+c@[192.0.2.1]", rcpt_to='"x y"@ex.test'))
    assert (options.mail_from, options.rcpt_to) == ("a.b+c@[192.0.2.1]", '"x y"@ex.test')


def test_helo_name_is_checked_too() -> None:
    with pytest.raises(OptionError, match="--helo-name: must not contain LF"):
        build_options(RawOptions(helo_name="x\nMAIL FROM:<a@b.c>"))


def test_defaults() -> None:
    options = build_options(RawOptions())
    assert options == BenchOptions()
    assert options.messages == 10_000
    assert options.duration is None
    assert not options.open_loop


def test_the_parser_takes_every_documented_flag(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    args = build_parser().parse_args(
        ["bench", "--target", "[::1]:2525", "--sessions", "4", "--duration", "2.5",
         "--size", "2048", "--recipients", "3", "--starttls", "--tls-ca", str(ca),
         "--no-pipelining", "--rate", "100", "--from", "a@example.org", "--to",
         "b@example.com", "--json", "--workers", "2", "--timeout", "5",
         "--max-seconds", "60", "--helo-name", "client.test"]
    )  # fmt: skip
    options = build_options(raw_options(args))
    assert options == BenchOptions(
        target=ListenAddress("::1", 2525),
        sessions=4,
        messages=None,
        duration=2.5,
        max_seconds=60.0,
        size=2048,
        recipients=3,
        starttls=True,
        tls_ca=ca,
        pipelining=False,
        rate=100.0,
        mail_from="a@example.org",
        rcpt_to="b@example.com",
        json=True,
        workers=2,
        timeout=5.0,
        helo_name="client.test",
    )


def test_local_server_options_without_target() -> None:
    options = build_options(
        RawOptions(delivery="discard", serve_args=("--max-errors=3",), starttls=False)
    )
    assert options.delivery is Delivery.DISCARD
    assert options.serve_args == ("--max-errors=3",)


def test_worker_argv_gives_back_the_same_options_with_a_share_of_the_load() -> None:
    options = build_options(
        RawOptions(
            target="127.0.0.1:2525", sessions="5", messages="101", workers="2", rate="50",
            mail_from="-odd@example.org", rcpt_to="-x@example.com", size="4096",
            recipients="2", no_pipelining=True, timeout="7",
        )
    )  # fmt: skip
    assert options.target is not None
    shares = split_evenly(101, 2)
    assert shares == [51, 50]
    argv = worker_argv(options, options.target, sessions=3, messages=shares[0], rate=25.0)
    args = build_parser().parse_args(["bench", *argv])
    worker = build_options(raw_options(args))
    assert worker.worker and worker.json
    assert (worker.sessions, worker.messages, worker.rate) == (3, 51, 25.0)
    assert (worker.mail_from, worker.rcpt_to) == (options.mail_from, options.rcpt_to)
    assert (worker.size, worker.recipients, worker.pipelining, worker.timeout) == (
        4096, 2, False, 7.0,
    )  # fmt: skip


def test_the_module_entry_point_exits_2_with_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "trimail.bench", "--to", "a@example.com\r\nQUIT"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=RUN_BOUND,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr == "trimail bench: error: --to: must not contain CR\n"
