"""Without --target: a real ``trimail serve`` subprocess is started, loaded and stopped."""

from __future__ import annotations

import io
import json
from pathlib import Path

from tests.tls_certs import issue
from trimail.bench.cli import bench_command, build_parser


def run(*args: str) -> tuple[int, str, str]:
    parsed = build_parser().parse_args(["bench", *args])
    out, err = io.StringIO(), io.StringIO()
    status = bench_command(parsed, stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


def test_a_local_trimail_is_started_loaded_and_stopped() -> None:
    status, out, err = run("--sessions", "3", "--messages", "30", "--json")
    assert status == 0, err
    data = json.loads(out)
    assert (data["messages"], data["attempted"], data["errors"]) == (30, 30, 0)
    assert data["target"].startswith("127.0.0.1:")


def test_serve_args_reach_the_local_server(tmp_path: Path) -> None:
    certs = issue(tmp_path)
    status, out, err = run(
        "--sessions", "2", "--messages", "6", "--delivery", "discard", "--starttls",
        f"--serve-arg=--tls-cert={certs.cert}", f"--serve-arg=--tls-key={certs.key}",
    )  # fmt: skip
    assert status == 0, err
    assert "6 of 6 attempted" in out
    assert "STARTTLS" in out
    assert "\n  tls " in out


def test_a_local_server_that_cannot_start_is_one_line_and_status_1() -> None:
    status, out, err = run("--messages", "1", "--serve-arg=--max-errors=0")
    assert status == 1
    assert out == ""
    assert err.count("\n") == 1
    assert err.startswith("trimail bench: error: trimail serve exited with status 2: ")
    assert "--max-errors" in err
