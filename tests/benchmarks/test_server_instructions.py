"""benchmarks/server_instructions.py: its plumbing against a real server, and its errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.benchmarks.scripts import load_script

server_instructions = load_script("server_instructions")


def test_an_unknown_server_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        server_instructions.main(["--servers", "trimail,postfix"])
    assert exited.value.code == 2
    assert "--servers: unknown postfix" in capsys.readouterr().err


def test_the_count_is_the_difference_of_two_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[int] = []

    def fake_count(server: str, messages: int, sessions: int, size: int) -> int:
        runs.append(messages)
        return 1_000_000 + 400 * messages

    monkeypatch.setattr(server_instructions, "count_instructions", fake_count)
    assert server_instructions.per_message("floor", 500, 1000, 20, 1024) == 400
    assert runs == [500, 1500]


@pytest.mark.parametrize("server", ["floor-lean", "trimail-maildir"])
def test_a_run_without_valgrind_output_says_which_server(
    server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Without valgrind in front, the whole run is real (server, load, stop) but no count is
    # printed: the script must notice rather than report a number.
    monkeypatch.setattr(server_instructions, "VALGRIND", ())
    with pytest.raises(SystemExit, match=f"valgrind printed no count for {server}"):
        server_instructions.count_instructions(server, messages=5, sessions=2, size=1024)


def test_a_server_that_exits_before_listening_is_reported(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"starting\n")
    server = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    server.wait()
    with pytest.raises(SystemExit, match="the server exited with 3 before listening"):
        server_instructions.announced_port(log, server)


def test_the_port_is_the_one_the_server_announced(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    log.write_bytes(b"2026-12-06 21:00:00,000 trimail: listening on 127.0.0.1:40123\n")
    server = subprocess.Popen([sys.executable, "-c", "raise SystemExit(0)"])
    server.wait()
    assert server_instructions.announced_port(log, server) == 40123
