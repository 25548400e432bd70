"""Instructions per message of a real server process under ``trimail bench``, counted by valgrind.

``instructions.py`` counts one session fed from a script: steady, but blind to everything
between the session and the kernel (the socket layer, the event loop's waits for many
sessions), because it has no sockets. This script starts the server itself under valgrind,
loads it over 127.0.0.1 with ``trimail bench`` (20 sessions by default, pipelining), stops it,
and reads the count; the difference of two runs (``--base`` messages, then ``--base`` plus
``--messages``) divided by ``--messages`` cancels start-up, imports and the sessions' set-up.
Valgrind runs the server ~50x slower, so the load generator always waits on it: the count is
the server's own work per message, repeatable to ~1% between runs, which time on this VM is not.
It counts user-space instructions only (no system calls, no cache misses).

Run: ``python benchmarks/server_instructions.py [--servers trimail,floor,...] [--messages N]
[--base N] [--sessions N] [--size BYTES]`` (needs ``valgrind``; about 2 minutes per server
at the defaults).
"""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from instructions import VALGRIND, chosen_servers, print_counts, read_refs, valgrind_found
from servers import LISTENING

HERE = Path(__file__).resolve().parent
HOST = "127.0.0.1"
SERVERS = ("trimail", "trimail-maildir", "floor", "floor-validating", "floor-lean")
#: Bounds on each step, so a stuck server or generator ends the run with a message.
START_SECONDS = 120.0
BENCH_SECONDS = 600.0
STOP_SECONDS = 120.0


def server_command(server: str, port: int, workdir: Path) -> list[str]:
    """The command line of ``server`` listening on ``HOST:port`` (a Maildir goes in ``workdir``)."""
    trimail = [
        *(sys.executable, "-m", "trimail", "serve"),
        *("--listen", f"{HOST}:{port}", "--hostname", "bench.test"),
    ]
    if server == "trimail":
        return [*trimail, "--delivery", "discard"]
    if server == "trimail-maildir":
        return [*trimail, "--maildir", str(workdir / "maildir")]
    flags = {"floor": [], "floor-validating": ["--validate"], "floor-lean": ["--lean-socket"]}
    return [sys.executable, str(HERE / "floor.py"), "--port", str(port), *flags[server]]


def announced_port(log: Path, server: subprocess.Popen[bytes]) -> int:
    """The port the server bound (it is given port 0: a port picked here and released before
    the server binds it could be taken by another process meanwhile, and valgrind's slow start
    made that window seconds long)."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        match = LISTENING.search(log.read_bytes())
        if match is not None:
            return int(match[1])
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode} before listening")
        time.sleep(0.2)
    raise SystemExit(f"the server did not say where it listens within {START_SECONDS:.0f}s")


def count_instructions(server: str, messages: int, sessions: int, size: int) -> int:
    """User-space instructions of one server run that received ``messages`` messages."""
    with tempfile.TemporaryDirectory() as workdir:
        log = Path(workdir) / "server.log"
        command = server_command(server, 0, Path(workdir))
        with log.open("wb") as output:  # the server's own stdout and stderr, and valgrind's
            process = subprocess.Popen([*VALGRIND, *command], stdout=output, stderr=output)
        try:
            port = announced_port(log, process)
            bench = [
                *(sys.executable, "-m", "trimail", "bench", "--target", f"{HOST}:{port}"),
                *("--sessions", str(sessions), "--messages", str(messages)),
                *("--size", str(size), "--timeout", "300", "--json"),
            ]
            done = subprocess.run(bench, capture_output=True, timeout=BENCH_SECONDS, check=False)
            if done.returncode != 0:  # a failed load would make the count meaningless
                tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:]
                raise SystemExit(f"trimail bench against {server} failed: {tail or '?'}")
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        refs = read_refs(log.read_bytes().decode(errors="replace"))
    if refs is None:
        raise SystemExit(f"valgrind printed no count for {server}")
    return refs


def per_message(server: str, base: int, messages: int, sessions: int, size: int) -> float:
    first = count_instructions(server, base, sessions, size)
    second = count_instructions(server, base + messages, sessions, size)
    return (second - first) / messages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--base", type=int, default=500, help="messages of the baseline run")
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--servers", default=",".join(SERVERS))
    args = parser.parse_args(argv)
    servers = chosen_servers(parser, args.servers, SERVERS)
    if not valgrind_found("server_instructions.py"):
        return 2
    counts = {
        name: per_message(name, args.base, args.messages, args.sessions, args.size)
        for name in servers
    }
    what = f"{args.messages} x {args.size} B, {args.sessions} sessions, trimail bench"
    print_counts(what, counts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
