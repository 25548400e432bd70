"""The load: scenarios, the two load generators, calibration, and the idle-sessions probe.

Two generators, because each hides something the other shows:

- ``trimail bench`` (Python, Trio): EHLO, and PIPELINING whenever the server advertises it
  (MAIL, RCPT and DATA in one write), so it measures a server the way a modern MTA talks to
  it. Being Python, it may saturate its core before a fast server does; its own JSON gives
  msg/s over the sending window (interpreter start-up excluded).
- Postfix ``smtp-source -d`` (C): HELO, one command per round trip, one connection per
  session kept for all its messages. It costs the machine little, so it shows more of the
  server; msg/s is timed around the process (its start-up, a few ms, is included).

smtp-source's ``-l`` counts the body only; it adds about 140 bytes of headers (From, To,
Date, Message-Id), so the runner asks for ``size - SMTP_SOURCE_HEADERS`` to send about the
same bytes per message as ``trimail bench --size``.

Every run is bounded in count (``messages``) and in time (``bound`` seconds, then the
generator is stopped and the measurement marked failed).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import trio
from servers import HOST, RunningServer, cpu_seconds, rss_kib

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SOURCE_HEADERS = 140
SENDER = "bench@example.org"
RECIPIENT = "sink@example.com"
HELO_NAME = "bench.test"
IDLE_CONCURRENCY = 100
IDLE_SETTLE = 0.5
#: Connect, greeting and EHLO reply of one idle session; beyond it the server is at a limit.
IDLE_SESSION_BOUND = 5.0

JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    sessions: int
    size: int
    #: Messages in the first calibration run (see ``calibrate``).
    pilot: int


SCENARIOS = (
    Scenario("1x1k", "1 x 1 KiB", 1, 1024, 300),
    Scenario("20x1k", "20 x 1 KiB", 20, 1024, 1000),
    Scenario("20x100k", "20 x 100 KiB", 20, 100 * 1024, 200),
    Scenario("200x1k", "200 x 1 KiB", 200, 1024, 2000),
)
IDLE_SESSIONS = 1000


@dataclass
class Measurement:
    """One load run: what was delivered, in how long, and what the server's CPU spent."""

    messages: int
    seconds: float
    ok: bool
    detail: str = ""
    server_cpu_seconds: float = 0.0
    raw: dict[str, JsonValue] = field(default_factory=dict)

    @property
    def per_second(self) -> float:
        return self.messages / self.seconds if self.seconds > 0 else 0.0


#: ``generator(server, scenario, messages, bound)``.
Generator = Callable[[RunningServer, Scenario, int, float], Measurement]


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _captured(argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Run a load generator to the end (or ``TimeoutExpired``), output captured as text."""
    return subprocess.run(
        argv, check=False, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def trimail_bench(
    server: RunningServer, scenario: Scenario, messages: int, bound: float
) -> Measurement:
    """``trimail bench --json`` from the runner's interpreter; pipelining as advertised."""
    argv = [sys.executable, "-m", "trimail", "bench", "--target", f"{HOST}:{server.port}"]
    argv += ["--sessions", str(min(scenario.sessions, messages)), "--messages", str(messages)]
    argv += ["--size", str(scenario.size), "--max-seconds", f"{bound:g}", "--json"]
    cpu_before = cpu_seconds(server.pid)
    try:
        done = _captured(argv, bound + 30)
    except subprocess.TimeoutExpired:
        return Measurement(0, bound, ok=False, detail=f"trimail bench ran over {bound:.0f} s")
    cpu = cpu_seconds(server.pid) - cpu_before
    try:
        data = json.loads(done.stdout)
    except ValueError:
        detail = f"trimail bench exited {done.returncode}: {_last_line(done.stderr)}"
        return Measurement(0, 0.0, ok=False, detail=detail, server_cpu_seconds=cpu)
    delivered = data.get("messages") if isinstance(data, dict) else None
    seconds = data.get("seconds") if isinstance(data, dict) else None
    if not isinstance(delivered, int) or not isinstance(seconds, int | float):
        detail = "trimail bench JSON lacks messages/seconds"
        return Measurement(0, 0.0, ok=False, detail=detail, server_cpu_seconds=cpu)
    ok = done.returncode == 0 and delivered == messages
    detail = "" if ok else f"errors={data.get('errors')} capped={data.get('capped')}"
    return Measurement(delivered, float(seconds), ok, detail, cpu, raw=data)


def smtp_source(
    server: RunningServer, scenario: Scenario, messages: int, bound: float
) -> Measurement:
    """Postfix ``smtp-source -d`` (HELO, no pipelining), timed around the process."""
    argv = [SMTP_SOURCE, "-d", "-s", str(min(scenario.sessions, messages)), "-m", str(messages)]
    argv += ["-l", str(max(1, scenario.size - SMTP_SOURCE_HEADERS)), "-M", HELO_NAME]
    argv += ["-f", SENDER, "-t", RECIPIENT, f"{HOST}:{server.port}"]
    cpu_before = cpu_seconds(server.pid)
    start = time.perf_counter()
    try:
        done = _captured(argv, bound)
    except subprocess.TimeoutExpired:
        return Measurement(0, bound, ok=False, detail=f"smtp-source ran over {bound:.0f} s")
    seconds = time.perf_counter() - start
    cpu = cpu_seconds(server.pid) - cpu_before
    raw: dict[str, JsonValue] = {"argv": list(argv), "returncode": done.returncode}
    if done.returncode != 0:
        detail = f"smtp-source exited {done.returncode}: {_last_line(done.stderr)}"
        return Measurement(0, seconds, ok=False, detail=detail, server_cpu_seconds=cpu, raw=raw)
    return Measurement(messages, seconds, ok=True, server_cpu_seconds=cpu, raw=raw)


GENERATORS: dict[str, Generator] = {"trimail-bench": trimail_bench, "smtp-source": smtp_source}
GENERATOR_LABELS = {
    "trimail-bench": "trimail bench (EHLO, pipelining when offered)",
    "smtp-source": "smtp-source -d (HELO, no pipelining)",
}


def messages_for(rate: float, scenario: Scenario, target_seconds: float, cap: int) -> int:
    """How many messages make a run of about ``target_seconds`` at ``rate`` msg/s.

    At least two per session, so every session does steady-state work after its setup.
    """
    wanted = round(rate * target_seconds)
    return max(scenario.sessions * 2, min(cap, wanted))


# -- the idle-sessions probe -------------------------------------------------------------------


async def _read_reply(stream: trio.SocketStream) -> bytes:
    """One whole (possibly multi-line) reply: up to a line whose fourth byte is a space."""
    buffer = b""
    while True:
        chunk = await stream.receive_some(4096)
        if not chunk:
            raise ConnectionError("closed before a complete reply")
        buffer += chunk
        if buffer.endswith(b"\r\n"):
            last = buffer[:-2].rsplit(b"\r\n", 1)[-1]
            if last[3:4] != b"-":
                return buffer


async def _open_idle(port: int, count: int) -> tuple[list[trio.SocketStream], str]:
    """Up to ``count`` sessions past EHLO, and why opening stopped short (``""``: it did not).

    The first session that is refused, broken or not served within ``IDLE_SESSION_BOUND``
    stops the whole attempt: the server has hit a limit, and waiting out a timeout for every
    remaining session would only make the run slow.
    """
    streams: list[trio.SocketStream] = []
    problem = ""
    limiter = trio.CapacityLimiter(IDLE_CONCURRENCY)

    async def one(nursery: trio.Nursery) -> None:
        nonlocal problem
        async with limiter:
            stream: trio.SocketStream | None = None
            try:
                with trio.fail_after(IDLE_SESSION_BOUND):
                    stream = await trio.open_tcp_stream(HOST, port)
                    await _read_reply(stream)
                    await stream.send_all(f"EHLO idle.{HELO_NAME}\r\n".encode())
                    reply = await _read_reply(stream)
                if not reply.startswith(b"250"):
                    raise ConnectionError(f"EHLO answered {reply[:40]!r}")
                streams.append(stream)
                stream = None
            except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
                problem = problem or f"after {len(streams)} sessions: {exc!r}"
                nursery.cancel_scope.cancel()
            finally:
                if stream is not None:
                    stream.socket.close()

    async with trio.open_nursery() as nursery:
        for _ in range(count):
            nursery.start_soon(one, nursery)
    return streams, problem


async def _idle(server: RunningServer, count: int) -> dict[str, JsonValue]:
    await trio.sleep(IDLE_SETTLE)  # let the readiness probe's session end
    before = rss_kib(server.pid)
    streams, problem = await _open_idle(server.port, count)
    try:
        await trio.sleep(IDLE_SETTLE)
        after = rss_kib(server.pid)
    finally:
        for stream in streams:
            stream.socket.close()
    opened = len(streams)
    per_session = (after - before) / opened if opened else None
    return {
        "sessions": opened,
        "failed": count - opened,
        "problem": problem,
        "rss_before_kib": before,
        "rss_after_kib": after,
        "kib_per_session": per_session,
    }


def idle_sessions(server: RunningServer, count: int = IDLE_SESSIONS) -> dict[str, JsonValue]:
    """Server RSS growth per idle session: (after - before) / sessions opened, in KiB.

    The sessions completed EHLO, so each holds whatever a server keeps per greeted client.
    """
    return trio.run(_idle, server, count)
