"""bench against a real trimail on 127.0.0.1: counts add up, the handler got every message."""

from __future__ import annotations

import io
import json
from pathlib import Path

import trio

from tests.server.running import running_server
from tests.tls_certs import issue
from trimail.bench.cli import bench_command, build_parser
from trimail.bench.message import build_message
from trimail.bench.options import BenchOptions
from trimail.bench.report import render_table, summary
from trimail.bench.runner import run_load
from trimail.bench.stats import PHASES
from trimail.config.model import ServerConfig, TlsConfig
from trimail.delivery.memory import MemoryHandler

PHASE_KEYS = {"count", "p50_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms"}


async def test_closed_loop_count_run_delivers_exactly_that_many() -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        options = BenchOptions(target=address, sessions=8, messages=200, size=1500)
        stats = await run_load(options, address)
    assert (stats.attempted, stats.messages, stats.errors) == (200, 200, 0)
    assert len(handler.messages) == 200
    expected = build_message(1500, options.mail_from, options.rcpt_to)
    assert all(stored.content == expected for stored in handler.messages)
    assert stats.bytes_delivered == 200 * 1500
    phases = stats.phases
    assert phases["connect"].count == phases["greeting"].count == phases["ehlo"].count == 8
    assert phases["mail"].count == phases["rcpt"].count == phases["data"].count == 200
    assert phases["transaction"].count == 200
    assert phases["tls"].count == 0
    assert not stats.capped
    assert 0 < stats.seconds < 30

    data = summary(stats, options, str(address))
    assert json.loads(json.dumps(data)) == data
    assert data["messages"] == 200
    assert data["errors"] == 0
    assert data["errors_by_code"] == {}
    assert data["mode"] == "closed"
    for key in ("seconds", "messages_per_second", "megabytes_per_second"):
        value = data[key]
        assert isinstance(value, float)
        assert value > 0
    phases_json = data["phases"]
    assert isinstance(phases_json, dict)
    assert set(phases_json) == set(PHASES)
    for name in PHASES:
        phase = phases_json[name]
        assert isinstance(phase, dict)
        assert set(phase) == PHASE_KEYS
    transaction = phases_json["transaction"]
    assert isinstance(transaction, dict)
    assert data["p50_ms"] == transaction["p50_ms"]
    assert data["p99_ms"] == transaction["p99_ms"]
    p50, p99, maximum, error = (
        data["p50_ms"], data["p99_ms"], data["max_ms"], data["latency_relative_error"]
    )  # fmt: skip
    assert isinstance(p50, float) and isinstance(p99, float) and isinstance(maximum, float)
    assert isinstance(error, float)
    assert 0 < p50 <= p99 <= maximum * (1 + error)
    tls = phases_json["tls"]
    assert isinstance(tls, dict)
    assert tls["p50_ms"] is None

    table = render_table(stats, options, str(address))
    assert "200 of 200 attempted" in table
    assert "errors     none" in table
    assert "transaction" in table


async def test_lockstep_with_several_recipients() -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        options = BenchOptions(
            target=address, sessions=3, messages=30, recipients=3, pipelining=False
        )
        stats = await run_load(options, address)
    assert (stats.attempted, stats.messages, stats.errors) == (30, 30, 0)
    assert stats.phases["rcpt"].count == 90
    assert len(handler.messages) == 30
    recipients = {tuple(map(str, m.envelope.recipients)) for m in handler.messages}
    assert recipients == {("sink@example.com", "sink+2@example.com", "sink+3@example.com")}


async def test_starttls_with_a_verified_certificate(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs")
    handler = MemoryHandler()
    config = ServerConfig(tls=TlsConfig(cert=certs.cert, key=certs.key))
    async with running_server(handler, config=config) as (_, address):
        options = BenchOptions(
            target=address, sessions=2, messages=10, starttls=True, tls_ca=certs.ca_file
        )
        stats = await run_load(options, address)
    assert (stats.attempted, stats.messages, stats.errors) == (10, 10, 0), stats
    assert stats.phases["tls"].count == 2
    assert stats.phases["ehlo"].count == 4  # before and after the handshake
    assert len(handler.messages) == 10


async def test_starttls_against_the_wrong_ca_fails_as_tls(tmp_path: Path) -> None:
    certs = issue(tmp_path / "certs")
    other = issue(tmp_path / "other")
    config = ServerConfig(tls=TlsConfig(cert=certs.cert, key=certs.key))
    async with running_server(MemoryHandler(), config=config) as (_, address):
        options = BenchOptions(
            target=address, sessions=2, messages=4, starttls=True, tls_ca=other.ca_file
        )
        stats = await run_load(options, address)
    assert stats.messages == 0
    assert stats.attempted == 4
    assert stats.connection_errors == {"tls": 4}


async def test_a_duration_run_ends_on_time() -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        options = BenchOptions(target=address, sessions=4, messages=None, duration=0.3)
        stats = await run_load(options, address)
    assert stats.messages > 0
    assert stats.attempted == stats.messages == len(handler.messages)
    assert not stats.capped
    assert stats.seconds < 10


async def test_two_workers_merge_into_one_report() -> None:
    handler = MemoryHandler()
    async with running_server(handler) as (_, address):
        args = build_parser().parse_args(
            ["bench", "--target", str(address), "--workers", "2", "--sessions", "5",
             "--messages", "41", "--json"]
        )  # fmt: skip
        out, err = io.StringIO(), io.StringIO()
        status = await trio.to_thread.run_sync(lambda: bench_command(args, stdout=out, stderr=err))
    assert status == 0, err.getvalue()
    data = json.loads(out.getvalue())
    assert (data["messages"], data["attempted"], data["errors"]) == (41, 41, 0)
    assert data["workers"] == 2
    assert data["sessions"] == 5
    assert data["phases"]["connect"]["count"] == 5  # 3 + 2 sessions
    assert data["phases"]["transaction"]["count"] == 41
    assert len(handler.messages) == 41
