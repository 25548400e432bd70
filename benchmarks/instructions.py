"""Instructions per message of ``session_alone.py``, counted by valgrind: a measure of CPU work
that does not move with the machine's speed.

On a shared VM the time per message of the same code moves by ±30% from one minute to the next,
so changes of a few percent cannot be seen in time. The number of instructions the interpreter
executes per message moves by well under 1% between runs, so it can: each change to the hot
path is judged by this count first, and by the end-to-end runner after. It counts user-space
instructions only (no system calls, no cache misses), so it ranks Python-level work, not I/O.

Each server's count is the difference between two runs of ``session_alone.py`` (``--base``
messages, and ``--base`` plus ``--messages``), so interpreter start-up and imports cancel out.

Run: ``python benchmarks/instructions.py [--messages N] [--size BYTES] [--servers a,b]
[--read-size BYTES]``
(needs ``valgrind``: ``apt-get install valgrind``; about 30 s per server).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SERVERS = ("trimail", "floor-validating", "floor")
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")
#: Valgrind counting instructions only (no cache simulation), with no output file.
VALGRIND = ("valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null")


def read_refs(valgrind_output: str) -> int | None:
    """The instruction count in valgrind's summary, or None if it printed none."""
    found = _REFS.search(valgrind_output)
    return None if found is None else int(found.group(1).replace(",", ""))


def count_instructions(server: str, messages: int, size: int, read_size: int | None) -> int:
    """User-space instructions of one ``session_alone.py`` run, as valgrind counts them."""
    command = [
        *VALGRIND,
        sys.executable,
        str(HERE / "session_alone.py"),
        "--messages",
        str(messages),
        "--size",
        str(size),
        "--server",
        server,
    ]
    if read_size is not None:
        command += ["--read-size", str(read_size)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    refs = read_refs(done.stderr)
    if done.returncode != 0 or refs is None:
        tail = done.stderr.strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"valgrind run of {server} failed: {tail[0]}")
    return refs


def per_message(
    server: str, base: int, messages: int, size: int, read_size: int | None = None
) -> float:
    first = count_instructions(server, base, size, read_size)
    second = count_instructions(server, base + messages, size, read_size)
    return (second - first) / messages


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--base", type=int, default=200, help="messages of the baseline run")
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--read-size", type=int, default=None, help="octets per message read")
    args = parser.parse_args(argv)
    servers = chosen_servers(parser, args.servers, SERVERS)
    if not valgrind_found("instructions.py"):
        return 2
    counts = {
        name: per_message(name, args.base, args.messages, args.size, args.read_size)
        for name in servers
    }
    print_counts(f"{args.messages} x {args.size} B, session_alone.py", counts)
    return 0


def chosen_servers(parser: argparse.ArgumentParser, names: str, known: Sequence[str]) -> list[str]:
    """The ``--servers`` list, or a usage error (exit 2) naming the unknown ones."""
    servers = [name for name in names.split(",") if name]
    unknown = sorted(set(servers) - set(known))
    if unknown:
        parser.error(f"--servers: unknown {', '.join(unknown)}; choose from {', '.join(known)}")
    return servers


def valgrind_found(script: str) -> bool:
    if shutil.which("valgrind") is None:
        print(f"{script}: valgrind not found; install it: apt-get install valgrind")
        return False
    return True


def print_counts(what: str, counts: dict[str, float]) -> None:
    """One line per server, with its ratio to the floor when the floor was counted."""
    print(f"instructions per message ({what})")
    reference = counts.get("floor")
    for name, count in counts.items():
        ratio = f"  {count / reference:.2f}x floor" if reference else ""
        print(f"{name:18s} {count:12,.0f}{ratio}")


if __name__ == "__main__":
    sys.exit(main())
