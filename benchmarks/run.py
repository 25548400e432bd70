"""Benchmark trimail against a Trio floor, aiosmtpd and Postfix smtp-sink, in one command.

    .venv/bin/python benchmarks/run.py [--quick] [--out DIR]

What one run does (``benchmarks/README.md`` explains why):

1. Sets up the peers venv (aiosmtpd, matplotlib) unless it exists; skips what cannot be had.
2. Calibrates: one short pilot per server x scenario x load generator gives a rate, from
   which that cell's message count is sized to take about ``--seconds`` (2.5 s; 0.75 s with
   ``--quick``). Every round then sends exactly that count, so rounds are comparable.
3. Runs ``--rounds`` (3) interleaved rounds: within a round, for each scenario and load
   generator, every server once in turn (A B C, A B C, ...), then the idle test per server.
   Each measurement gets a fresh server process with its own temporary directory, stopped
   (SIGTERM, then SIGKILL) before the next one starts.
4. Runs ``micro.py`` (hot-path micro-benchmarks, no sockets).
5. Writes ``results.json`` (every round, raw), ``results.md`` (medians and ratios) and
   ``throughput.png`` to ``--out`` (default ``benchmarks/results/<UTC timestamp>``), and prints
   the tables.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from loads import (
    GENERATOR_LABELS,
    GENERATORS,
    IDLE_SESSIONS,
    SCENARIOS,
    SMTP_SOURCE,
    JsonValue,
    Measurement,
    Scenario,
    idle_sessions,
    messages_for,
)
from machine_speed import MachineSpeed, measure
from peers import Peers, ensure_peers
from report import Row, Series, micro_table, plain_table, throughput_table
from servers import (
    ServerError,
    ServerSpec,
    aiosmtpd_spec,
    find_smtp_sink,
    floor_spec,
    running,
    smtp_sink_spec,
    trimail_spec,
)

HERE = Path(__file__).resolve().parent
IDLE = "idle"
MIN_ROUNDS = 3
#: A pilot shorter than this is too short to give a rate; a second, longer one follows.
PILOT_MIN_SECONDS = 0.25
#: Upper bounds on a cell's message count, whatever the pilot said.
CAP_SMALL, CAP_LARGE = 300_000, 30_000
MICRO_BOUND = 300.0
PLOT_BOUND = 120.0


@dataclass(frozen=True)
class Settings:
    rounds: int
    seconds: float
    quick: bool
    out: Path
    servers: frozenset[str] | None
    scenarios: frozenset[str] | None
    generators: frozenset[str] | None
    install: bool
    micro: bool

    @property
    def bound(self) -> float:
        """Hard time limit of one load run: far above the target, far below forever."""
        return max(30.0, 10 * self.seconds)


@dataclass
class Results:
    """Everything measured, in the order it happened (``results.json``)."""

    meta: dict[str, JsonValue]
    calibration: list[JsonValue] = field(default_factory=list)
    measurements: list[JsonValue] = field(default_factory=list)
    idle: list[JsonValue] = field(default_factory=list)
    micro: list[JsonValue] = field(default_factory=list)
    throughput: dict[tuple[str, str, str], Series] = field(default_factory=dict)
    cpu: dict[tuple[str, str, str], Series] = field(default_factory=dict)
    idle_kib: dict[str, Series] = field(default_factory=dict)
    #: Things a reader of the table must know (skips, limits hit), once each.
    notes: list[str] = field(default_factory=list)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- set-up ------------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> Settings:
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="trimail vs a Trio floor, aiosmtpd and smtp-sink: interleaved rounds.",
    )
    parser.add_argument("--quick", action="store_true", help="0.75 s per measurement")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help="rounds (>= 3)")
    parser.add_argument("--seconds", type=float, help="target seconds per measurement")
    parser.add_argument("--out", type=Path, help="output directory")
    parser.add_argument("--servers", help="comma-separated server keys (default: all)")
    parser.add_argument("--scenarios", help="comma-separated scenario keys, 'idle' too")
    parser.add_argument("--generators", help="trimail-bench,smtp-source (default: both)")
    parser.add_argument("--no-install", action="store_true", help="do not create the peers venv")
    parser.add_argument("--no-micro", action="store_true", help="skip micro.py")
    args = parser.parse_args(argv)
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds: a median needs at least {MIN_ROUNDS} rounds")
    seconds = args.seconds if args.seconds is not None else 0.75 if args.quick else 2.5
    if not 0 < seconds <= 60:
        parser.error("--seconds: must be in (0, 60]")
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")

    def keys(text: str | None) -> frozenset[str] | None:
        return frozenset(part.strip() for part in text.split(",")) if text else None

    return Settings(
        rounds=args.rounds,
        seconds=seconds,
        quick=args.quick,
        out=args.out if args.out is not None else HERE / "results" / stamp,
        servers=keys(args.servers),
        scenarios=keys(args.scenarios),
        generators=keys(args.generators),
        install=not args.no_install,
        micro=not args.no_micro,
    )


def raise_fd_limit() -> None:
    """1,000 idle sessions need ~1,000 descriptors in the runner and in each server."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 4 * IDLE_SESSIONS
    if soft < wanted:
        ceiling = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (ceiling, hard))


def available_servers(
    peers: Peers, wanted: frozenset[str] | None
) -> tuple[list[ServerSpec], list[str]]:
    """The servers this machine can run, in table order, and why the others are skipped."""
    specs = [
        trimail_spec(durable=False),
        trimail_spec(durable=True),
        floor_spec(),
        floor_spec(validate=True),
        floor_spec(lean_socket=True),
    ]
    skipped = []
    if peers.has("aiosmtpd") and peers.python is not None:
        specs += [
            aiosmtpd_spec(peers.python, mailbox=False),
            aiosmtpd_spec(peers.python, mailbox=True),
        ]
    else:
        skipped.append("aiosmtpd: skipped, not available in the peers venv (see notes)")
    sink = find_smtp_sink()
    if sink is not None:
        specs.append(smtp_sink_spec(sink))
    else:
        skipped.append("smtp-sink: skipped, Postfix is not installed (apt-get install postfix)")
    if wanted is not None:
        specs = [spec for spec in specs if spec.key in wanted]
    return specs, skipped


def available_generators(wanted: frozenset[str] | None) -> tuple[list[str], list[str]]:
    keys = [key for key in GENERATORS if wanted is None or key in wanted]
    skipped = []
    if "smtp-source" in keys and not os.access(SMTP_SOURCE, os.X_OK):
        keys.remove("smtp-source")
        skipped.append("smtp-source: skipped, Postfix is not installed (apt-get install postfix)")
    return keys, skipped


def selected_scenarios(wanted: frozenset[str] | None) -> tuple[list[Scenario], bool]:
    scenarios = [s for s in SCENARIOS if wanted is None or s.key in wanted]
    return scenarios, wanted is None or IDLE in wanted


def _command_output(argv: list[str]) -> str | None:
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if done.returncode != 0:
        return None
    return done.stdout.strip() or None


def _filesystem(path: str) -> str:
    """The type of the filesystem holding ``path`` (fsync on tmpfs is free; on ext4 it is not)."""
    best, kind = "", "unknown"
    for line in Path("/proc/self/mounts").read_text().splitlines():
        parts = line.split()
        mount = parts[1] if len(parts) > 2 else ""
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if mount and inside and len(mount) > len(best):
            best, kind = mount, parts[2]
    return kind


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _c_modules_in_use() -> list[str]:
    """trimail's optional C modules that the servers run (built by pip where a compiler is,
    and not switched off with TRIMAIL_NO_EXTENSIONS, which the servers inherit)."""
    from trimail.delivery import maildir  # noqa: PLC0415  (checked importable in main first)
    from trimail.protocol import body  # noqa: PLC0415

    in_use = {"_speedups": body.ACCELERATED, "_maildir_batch": maildir.C_BATCHES}
    return [name for name, used in in_use.items() if used]


def machine_meta(settings: Settings, peers: Peers, notes: list[str]) -> dict[str, JsonValue]:
    postfix = _command_output(["postconf", "-d", "-h", "mail_version"])
    return {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([sys.executable, *sys.argv]),
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": _cpu_model(),
        "loadavg_start": list(os.getloadavg()),
        "python": platform.python_version(),
        "trimail": importlib.metadata.version("trimail"),
        "trimail_c_modules": _c_modules_in_use(),
        "git": _command_output(["git", "-C", str(HERE), "describe", "--always", "--dirty"]),
        "aiosmtpd": peers.versions.get("aiosmtpd"),
        "matplotlib": peers.versions.get("matplotlib"),
        "postfix": postfix,
        "tmp_filesystem": _filesystem(tempfile.gettempdir()),
        "rounds": settings.rounds,
        "target_seconds": settings.seconds,
        "quick": settings.quick,
        "lifecycle": "a fresh server process per measurement (calibration, load, idle)",
        "notes": list(notes),
    }


# -- measuring ---------------------------------------------------------------------------------


class MeasurementDirectories:
    """Every measurement's working directory (its Maildir, its log), all under one root that
    is removed at the end of the run, not after each measurement.

    Deleting a Maildir of thousands of files right after a measurement would tax the next
    ones: ext4 skips recently freed inodes when it allocates new ones (seen in perf as
    ``recently_deleted`` under ``openat``), which cut the next Maildir run's msg/s by up to
    half in the runs that found it.
    """

    def __init__(self) -> None:
        self.root: Path | None = None

    def new(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="measurement-", dir=self.root))


DIRECTORIES = MeasurementDirectories()


def load_once(
    spec: ServerSpec, scenario: Scenario, generator: str, messages: int, bound: float
) -> Measurement:
    """One load run against a server started for it alone."""
    try:
        with running(spec, DIRECTORIES.new()) as server:
            return GENERATORS[generator](server, scenario, messages, bound)
    except ServerError as exc:
        return Measurement(0, 0.0, ok=False, detail=str(exc))


def cap_for(scenario: Scenario) -> int:
    return CAP_LARGE if scenario.size > 10_000 else CAP_SMALL


def calibrate(
    spec: ServerSpec, scenario: Scenario, generator: str, settings: Settings, results: Results
) -> int:
    """The message count that makes this cell's run take about ``settings.seconds``."""
    pilot = max(scenario.sessions * 2, scenario.pilot // 2 if settings.quick else scenario.pilot)
    measured = load_once(spec, scenario, generator, pilot, settings.bound)
    if measured.ok and measured.seconds < PILOT_MIN_SECONDS:
        pilot = messages_for(
            measured.per_second, scenario, 2 * PILOT_MIN_SECONDS, cap_for(scenario)
        )
        measured = load_once(spec, scenario, generator, pilot, settings.bound)
    count = (
        messages_for(measured.per_second, scenario, settings.seconds, cap_for(scenario))
        if measured.ok
        else pilot
    )
    results.calibration.append(
        {
            "server": spec.key,
            "scenario": scenario.key,
            "generator": generator,
            "pilot_messages": pilot,
            "pilot_msg_per_s": round(measured.per_second, 1),
            "pilot_ok": measured.ok,
            "pilot_detail": measured.detail,
            "messages": count,
        }
    )
    log(f"calibrate {scenario.label:<13} {generator:<13} {spec.key:<17} "
        f"{measured.per_second:>9,.0f} msg/s -> {count} messages")  # fmt: skip
    return count


def record_load(
    results: Results,
    number: int,
    cell: tuple[ServerSpec, Scenario, str],
    measured: Measurement,
) -> None:
    spec, scenario, generator = cell
    key = (spec.key, scenario.key, generator)
    series = results.throughput.setdefault(key, Series())
    cpu = results.cpu.setdefault(key, Series())
    cpu_us = measured.server_cpu_seconds / measured.messages * 1e6 if measured.messages else None
    if measured.ok:
        series.values.append(measured.per_second)
        if cpu_us is not None:
            cpu.values.append(cpu_us)
    else:
        series.failed += 1
    results.measurements.append(
        {
            "round": number,
            "server": spec.key,
            "scenario": scenario.key,
            "generator": generator,
            "messages": measured.messages,
            "seconds": round(measured.seconds, 6),
            "msg_per_s": round(measured.per_second, 3),
            "ok": measured.ok,
            "detail": measured.detail,
            "server_cpu_seconds": round(measured.server_cpu_seconds, 3),
            "server_cpu_us_per_msg": None if cpu_us is None else round(cpu_us, 1),
            "raw": measured.raw,
        }
    )
    state = "" if measured.ok else f"  FAILED: {measured.detail}"
    log(f"round {number} {scenario.label:<13} {generator:<13} {spec.key:<17} "
        f"{measured.per_second:>9,.0f} msg/s ({measured.messages} in {measured.seconds:.2f} s)"
        f"{state}")  # fmt: skip


def idle_once(spec: ServerSpec, number: int, results: Results) -> None:
    """RSS per idle session on a fresh server; recorded like a load run.

    A server that stops taking sessions before ``IDLE_SESSIONS`` still gets its per-session
    figure over the sessions it took, marked in the table and explained in the notes.
    """
    series = results.idle_kib.setdefault(spec.key, Series())
    try:
        with running(spec, DIRECTORIES.new()) as server:
            data = idle_sessions(server)
    except ServerError as exc:
        data = {"sessions": 0, "failed": IDLE_SESSIONS, "problem": str(exc)}
    per_session, opened = data.get("kib_per_session"), data.get("sessions")
    if isinstance(per_session, float):
        series.values.append(per_session)
    else:
        series.failed += 1
    if data.get("failed"):
        series.note = f"{opened} of {IDLE_SESSIONS:,} sessions"
        note = f"{spec.key}: idle test stopped at {opened} sessions ({data.get('problem')})"
        if note not in results.notes:
            results.notes.append(note)
    results.idle.append({"round": number, "server": spec.key, "ok": not data.get("failed"), **data})
    shown = f"{per_session:.1f} KiB/session" if isinstance(per_session, float) else "no result"
    log(f"round {number} idle {spec.key:<17} {shown} ({opened} sessions)")


def run_rounds(
    settings: Settings,
    *,
    specs: Sequence[ServerSpec],
    scenarios: Sequence[Scenario],
    generators: Sequence[str],
    idle: bool,
    results: Results,
) -> None:
    counts = {
        (spec.key, scenario.key, generator): calibrate(spec, scenario, generator, settings, results)
        for scenario in scenarios
        for generator in generators
        for spec in specs
    }
    for number in range(1, settings.rounds + 1):
        for scenario in scenarios:
            for generator in generators:
                for spec in specs:
                    messages = counts[(spec.key, scenario.key, generator)]
                    measured = load_once(spec, scenario, generator, messages, settings.bound)
                    record_load(results, number, (spec, scenario, generator), measured)
        if idle:
            for spec in specs:
                idle_once(spec, number, results)


def run_micro(settings: Settings) -> tuple[list[JsonValue], str | None]:
    """``micro.py --json`` in a subprocess (its own interpreter, nothing else running)."""
    argv = [
        sys.executable,
        str(HERE / "micro.py"),
        "--json",
        *(["--quick"] if settings.quick else []),
    ]
    try:
        done = subprocess.run(
            argv, check=False, capture_output=True, text=True, timeout=MICRO_BOUND
        )
    except subprocess.TimeoutExpired:
        return [], f"micro.py ran over {MICRO_BOUND:.0f} s"
    if done.returncode != 0:
        return [], f"micro.py failed: {done.stderr.strip().splitlines()[-1:]}"
    data = json.loads(done.stdout)
    return (data if isinstance(data, list) else []), None


# -- output ------------------------------------------------------------------------------------


def rows_for(specs: Sequence[ServerSpec]) -> list[Row]:
    return [Row(spec.key, spec.label, spec.aiosmtpd_peer) for spec in specs]


def markdown(
    results: Results,
    specs: Sequence[ServerSpec],
    scenarios: Sequence[Scenario],
    generators: Sequence[str],
    idle: bool,
) -> str:
    meta = results.meta
    rows = rows_for(specs)
    c_modules = meta.get("trimail_c_modules") or []
    assert isinstance(c_modules, list)
    columns = [(scenario.key, scenario.label) for scenario in scenarios]
    lines = [
        f"# trimail benchmarks, {meta['started']}",
        "",
        f"- command: `{meta['command']}`",
        f"- machine: {meta['nproc']} CPUs ({meta['cpu']}), load average at start "
        f"{_loadavg(meta.get('loadavg_start'))}, at end {_loadavg(meta.get('loadavg_end'))}",
        f"- machine speed (`machine_speed.py`: lower ms and more files/s are faster): at start "
        f"{_speed(meta.get('speed_start'))}; at end {_speed(meta.get('speed_end'))}",
        f"- software: Python {meta['python']}, trimail {meta['trimail']} ({meta['git']}; "
        f"C modules in use: {', '.join(c_modules) if c_modules else 'none'}), "
        f"aiosmtpd {meta['aiosmtpd']}, Postfix {meta['postfix']}; temp files on "
        f"{meta['tmp_filesystem']}",
        f"- method: median of {meta['rounds']} interleaved rounds, ~{meta['target_seconds']} s "
        f"per measurement, {meta['lifecycle']}",
        "",
    ]
    for generator in generators:
        cells = {(k[0], k[1]): s for k, s in results.throughput.items() if k[2] == generator}
        lines += [
            f"## msg/s, {GENERATOR_LABELS[generator]}",
            "",
            "Median ±spread (x floor / x aiosmtpd: Sink for discard rows, Mailbox for Maildir);"
            " † n: n rounds failed.",
            "",
            *throughput_table(rows, columns, cells),
            "",
        ]
    if idle:
        cells = {(key, IDLE): series for key, series in results.idle_kib.items()}
        label = f"{IDLE_SESSIONS:,} idle sessions, KiB RSS per session"
        lines += [
            "## Memory per idle session",
            "",
            "Server VmRSS after minus before opening the sessions (each past EHLO), divided by "
            "their number. Median ±spread (x floor / x aiosmtpd Sink or Mailbox).",
            "",
            *throughput_table(rows, [(IDLE, label)], cells),
            "",
        ]
    for generator in generators:
        cells = {(k[0], k[1]): s for k, s in results.cpu.items() if k[2] == generator}
        lines += [
            f"## Server CPU per message (µs, user+system, median), {generator}",
            "",
            "From /proc/PID/stat around the load run: what the server spent, whoever was "
            "waiting for whom. Less sensitive to the load generator than msg/s.",
            "",
            *plain_table(rows, columns, cells),
            "",
        ]
    micro = [entry for entry in results.micro if isinstance(entry, dict)]
    if micro:
        lines += ["## Micro-benchmarks (micro.py, no sockets)", "", *micro_table(micro), ""]
    notes = meta.get("notes")
    if isinstance(notes, list) and notes:
        lines += ["## Skipped and notes", "", *(f"- {note}" for note in notes), ""]
    failures = [m for m in results.measurements if isinstance(m, dict) and m.get("ok") is False]
    if failures:
        lines += ["## Failed measurements", ""]
        lines += [
            f"- round {m['round']} {m['server']} {m['scenario']} {m['generator']}: {m['detail']}"
            for m in failures
        ]
        lines.append("")
    return "\n".join(lines)


def record_speed(results: Results, work_root: Path, when: str) -> None:
    """The machine's speed into the results' meta; a probe that fails (a full disk at the end
    of a Maildir-heavy run) becomes a note rather than losing the run's results."""
    try:
        speed = measure(work_root / f"speed-{when}")
    except OSError as exc:
        note = f"machine speed at {when}: not measured ({exc})"
        results.notes.append(note)
        log(f"note: {note}")
        return
    results.meta[f"speed_{when}"] = speed_json(speed)
    log(f"machine speed at {when}: {speed.describe()}")


def speed_json(speed: MachineSpeed) -> dict[str, JsonValue]:
    return {
        "python_loop_ms": round(speed.python_loop_ms, 3),
        "durable_files_per_second": round(speed.durable_files_per_second, 1),
    }


def _speed(value: JsonValue) -> str:
    if isinstance(value, dict):
        loop, files = value.get("python_loop_ms"), value.get("durable_files_per_second")
        if isinstance(loop, float) and isinstance(files, float):
            return MachineSpeed(loop, files).describe()
    return "?"


def _loadavg(value: JsonValue) -> str:
    if isinstance(value, list):
        return " ".join(f"{v:.2f}" for v in value if isinstance(v, float))
    return "?"


def medians_json(results: Results, specs: Sequence[ServerSpec]) -> list[JsonValue]:
    labels = {spec.key: spec.label for spec in specs}
    scenario_labels = {scenario.key: scenario.label for scenario in SCENARIOS}
    return [
        {
            "server": server,
            "server_label": labels.get(server, server),
            "scenario": scenario,
            "scenario_label": scenario_labels.get(scenario, scenario),
            "generator": generator,
            "generator_label": GENERATOR_LABELS[generator],
            "msg_per_s": series.median,
            "spread": series.spread,
            "rounds_ok": len(series.values),
            "rounds_failed": series.failed,
        }
        for (server, scenario, generator), series in results.throughput.items()
    ]


def write_outputs(
    results: Results, specs: Sequence[ServerSpec], text: str, out: Path, peers: Peers
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    document: dict[str, JsonValue] = {
        "meta": results.meta,
        "calibration": results.calibration,
        "measurements": results.measurements,
        "idle": results.idle,
        "micro": results.micro,
        "medians": medians_json(results, specs),
    }
    (out / "results.json").write_text(json.dumps(document, indent=1) + "\n")
    (out / "results.md").write_text(text)
    plot(out, peers)


def plot(out: Path, peers: Peers) -> None:
    if not peers.has("matplotlib") or peers.python is None:
        log("plot: skipped, matplotlib is not available in the peers venv")
        return
    argv = [
        str(peers.python),
        str(HERE / "plot.py"),
        str(out / "results.json"),
        str(out / "throughput.png"),
    ]
    try:
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=PLOT_BOUND)
    except subprocess.TimeoutExpired:
        log(f"plot: skipped, plot.py ran over {PLOT_BOUND:.0f} s")
        return
    if done.returncode != 0:
        log(f"plot: failed: {done.stderr.strip().splitlines()[-1:]}")


def main(argv: Sequence[str] | None = None) -> int:
    settings = parse_args(argv)
    if importlib.util.find_spec("trimail") is None:
        # trimail serve and trimail bench run from this interpreter.
        log("run.py: trimail is not importable; run it with the dev venv (.venv/bin/python)")
        return 2
    raise_fd_limit()
    peers = ensure_peers(install=settings.install)
    specs, skipped_servers = available_servers(peers, settings.servers)
    generators, skipped_generators = available_generators(settings.generators)
    scenarios, idle = selected_scenarios(settings.scenarios)
    results = Results(meta={})
    notes = results.notes
    notes += [*peers.notes, *skipped_servers, *skipped_generators]
    if not peers.has("matplotlib"):
        notes.append("plot: skipped, matplotlib is not available in the peers venv")
    for note in notes:
        log(f"note: {note}")
    if not specs:
        log("run.py: no server selected")
        return 2
    results.meta = machine_meta(settings, peers, notes)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="trimail-benchmarks-") as work_root:
        DIRECTORIES.root = Path(work_root)
        record_speed(results, Path(work_root), "start")
        run_rounds(
            settings,
            specs=specs,
            scenarios=scenarios,
            generators=generators,
            idle=idle,
            results=results,
        )
        record_speed(results, Path(work_root), "end")
        log("removing the measurements' working directories")
    if settings.micro:
        results.micro, problem = run_micro(settings)
        if problem is not None:
            notes.append(problem)
    results.meta["loadavg_end"] = list(os.getloadavg())
    results.meta["wall_seconds"] = round(time.monotonic() - started, 1)
    results.meta["notes"] = list(notes)
    text = markdown(results, specs, scenarios, generators, idle)
    write_outputs(results, specs, text, settings.out, peers)
    print(text)
    log(f"results: {settings.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
