"""How ``trimail serve --workers K`` scales: msg/s for K = 1, 2, ... on the same load.

Each cell is the median of ``--rounds`` interleaved rounds (every K once per round, a fresh
server each time), with ``trimail bench`` as the load (20 sessions of 1 KiB messages by
default), for the discard and the Maildir delivery. The load generator runs on the same
machine: with few cores it competes with the workers, which is part of what this shows.

Run: ``python benchmarks/workers.py [--max-workers K] [--rounds N] [--messages N]`` with the
dev venv (trimail importable). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from loads import Scenario, trimail_bench
from servers import HOST, ServerError, ServerSpec, running

BOUND = 120.0


def spec(workers: int, *, durable: bool) -> ServerSpec:
    def argv(workdir: Path, port: int) -> list[str]:
        command = [sys.executable, "-m", "trimail", "serve", "--listen", f"{HOST}:{port}"]
        command += ["--hostname", "bench.test", "--maildir", str(workdir / "maildir")]
        command += ["--workers", str(workers)]
        return command if durable else [*command, "--delivery", "discard"]

    kind = "Maildir" if durable else "discard"
    return ServerSpec(f"w{workers}-{kind}", f"{kind}, {workers} workers", argv, True, None)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=6000)
    parser.add_argument("--sessions", type=int, default=20)
    args = parser.parse_args(argv)
    scenario = Scenario("workers", f"{args.sessions} x 1 KiB", args.sessions, 1024, 0)
    counts = list(range(1, args.max_workers + 1))
    rates: dict[tuple[bool, int], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="trimail-workers-") as root:
        for round_number in range(args.rounds):
            for durable in (False, True):
                for workers in counts:
                    workdir = Path(tempfile.mkdtemp(dir=root))
                    try:
                        with running(spec(workers, durable=durable), workdir) as server:
                            measured = trimail_bench(server, scenario, args.messages, BOUND)
                    except ServerError as exc:
                        print(f"round {round_number + 1}: {workers} workers: {exc}")
                        continue
                    if measured.ok:
                        rates.setdefault((durable, workers), []).append(measured.per_second)
                    print(
                        f"round {round_number + 1}: {'Maildir' if durable else 'discard'} "
                        f"{workers} workers: {measured.per_second:,.0f} msg/s "
                        f"{'' if measured.ok else measured.detail}",
                        file=sys.stderr,
                    )
    print(f"\n`trimail serve --workers K`, {scenario.label}, trimail bench, "
          f"median of {args.rounds} rounds (x K=1)\n")  # fmt: skip
    print("| delivery | " + " | ".join(f"K={k}" for k in counts) + " |")
    print("|---|" + "---:|" * len(counts))
    for durable in (False, True):
        base = rates.get((durable, 1))
        cells = []
        for workers in counts:
            values = rates.get((durable, workers))
            if not values:
                cells.append("failed")
                continue
            median = statistics.median(values)
            ratio = f" ({median / statistics.median(base):.2f}x)" if base else ""
            cells.append(f"{median:,.0f}{ratio}")
        print(f"| {'Maildir' if durable else 'discard'} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
