"""benchmarks/instructions.py: the valgrind count it reads, and its errors for people."""

from __future__ import annotations

import subprocess

import pytest

from tests.benchmarks.scripts import load_script

instructions = load_script("instructions")

CACHEGRIND_TAIL = "==24469== \n==24469== I   refs:      1,625,643,849\n"


def test_an_unknown_server_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.main(["--servers", "trimail,postfix"])
    assert exited.value.code == 2
    assert "--servers: unknown postfix" in capsys.readouterr().err


def test_the_count_is_read_from_valgrind_and_differenced(monkeypatch: pytest.MonkeyPatch) -> None:
    runs: list[list[str]] = []

    def fake_run(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        runs.append(command)
        messages = int(command[command.index("--messages") + 1])
        refs = f"{1_000_000 + 500 * messages:,}"
        return subprocess.CompletedProcess(command, 0, "", f"==1== I   refs:      {refs}\n")

    monkeypatch.setattr(instructions.subprocess, "run", fake_run)
    assert instructions.per_message("floor", 200, 2000, 1024) == 500
    assert [run[run.index("--messages") + 1] for run in runs] == ["200", "2200"]
    assert instructions._REFS.search(CACHEGRIND_TAIL) is not None


def test_a_failed_valgrind_run_says_which_server(monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(command: list[str], **_: object) -> subprocess.CompletedProcess[str]:
        return subprocess.CompletedProcess(command, 1, "", "valgrind: bad option\n")

    monkeypatch.setattr(instructions.subprocess, "run", failing)
    with pytest.raises(SystemExit, match="valgrind run of trimail failed: valgrind: bad option"):
        instructions.count_instructions("trimail", 10, 1024, None)
