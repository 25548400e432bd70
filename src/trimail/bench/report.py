"""What a run prints: a table for people, or one JSON object for scripts (``--json``).

Both come from ``summary``, so they never disagree. Latencies are milliseconds; percentiles
are nearest-rank from the log-bucket histograms, within ``stats.RELATIVE_ERROR`` (stated in
the JSON as ``latency_relative_error``); ``max_ms`` is exact. A phase with no samples (``tls``
without ``--starttls``) has null percentiles. Megabytes are 10**6 bytes of message (headers
and body, before dot-stuffing) delivered.
"""

from __future__ import annotations

import json

from .options import BenchOptions
from .stats import PHASES, RELATIVE_ERROR, Histogram, JsonValue, RunStats

_PERCENTILES = (("p50_ms", 50.0), ("p90_ms", 90.0), ("p99_ms", 99.0))


def _ms(nanoseconds: int | float) -> float:
    return round(nanoseconds / 1e6, 3)


def phase_summary(histogram: Histogram) -> dict[str, JsonValue]:
    result: dict[str, JsonValue] = {"count": histogram.count}
    empty = histogram.count == 0
    for key, percent in _PERCENTILES:
        result[key] = None if empty else _ms(histogram.percentile(percent))
    result["max_ms"] = None if empty else _ms(histogram.maximum)
    result["mean_ms"] = None if empty else _ms(histogram.mean())
    return result


def summary(stats: RunStats, options: BenchOptions, target: str) -> dict[str, JsonValue]:
    seconds = stats.seconds
    per_second = stats.messages / seconds if seconds > 0 else 0.0
    megabytes = stats.bytes_delivered / 1e6 / seconds if seconds > 0 else 0.0
    phases: dict[str, JsonValue] = {
        name: phase_summary(stats.phases.get(name, Histogram())) for name in PHASES
    }
    whole = phase_summary(stats.phases.get("transaction", Histogram()))
    result: dict[str, JsonValue] = {
        "target": target,
        "mode": "open" if options.open_loop else "closed",
        "rate": options.rate,
        "sessions": options.sessions,
        "workers": options.workers,
        "pipelining": options.pipelining,
        "starttls": options.starttls,
        "size": options.size,
        "recipients": options.recipients,
        "messages": stats.messages,
        "attempted": stats.attempted,
        "errors": stats.errors,
        "errors_by_code": dict(sorted(stats.errors_by_code.items())),
        "connection_errors": dict(sorted(stats.connection_errors.items())),
        "seconds": round(seconds, 6),
        "capped": stats.capped,
        "interrupted": stats.interrupted,
        "messages_per_second": round(per_second, 3),
        "megabytes_per_second": round(megabytes, 3),
        "bytes": stats.bytes_delivered,
        "p50_ms": whole["p50_ms"],
        "p90_ms": whole["p90_ms"],
        "p99_ms": whole["p99_ms"],
        "max_ms": whole["max_ms"],
        "phases": phases,
        "latency_relative_error": RELATIVE_ERROR,
    }
    return result


def to_json(stats: RunStats, options: BenchOptions, target: str) -> str:
    return json.dumps(summary(stats, options, target), sort_keys=False)


def _cell(value: JsonValue) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def render_table(stats: RunStats, options: BenchOptions, target: str) -> str:
    data = summary(stats, options, target)
    mode = f"open loop at {options.rate:g} msg/s" if options.rate is not None else "closed loop"
    lines = [
        f"trimail bench: {target}, {options.sessions} sessions"
        + (f" in {options.workers} workers" if options.workers > 1 else "")
        + f", {mode}, {options.size}-byte messages, {options.recipients} rcpt"
        + (", STARTTLS" if options.starttls else "")
        + ("" if options.pipelining else ", no pipelining"),
        f"  delivered  {stats.messages} of {stats.attempted} attempted in {stats.seconds:.3f} s"
        + (" (cut short by --max-seconds)" if stats.capped else "")
        + (" (interrupted)" if stats.interrupted else ""),
        f"  throughput {data['messages_per_second']} msg/s, {data['megabytes_per_second']} MB/s",
    ]
    errors = [f"{code}: {count}" for code, count in sorted(stats.errors_by_code.items())]
    errors += [f"{kind}: {count}" for kind, count in sorted(stats.connection_errors.items())]
    lines.append(f"  errors     {', '.join(errors) if errors else 'none'}")
    lines.append("")
    header = f"  {'phase':<12}{'count':>9}{'p50 ms':>11}{'p90 ms':>11}{'p99 ms':>11}{'max ms':>11}"
    lines.append(header)
    phases = data["phases"]
    assert isinstance(phases, dict)
    for name in PHASES:
        phase = phases[name]
        assert isinstance(phase, dict)
        if phase["count"] == 0:
            continue
        lines.append(
            f"  {name:<12}{_cell(phase['count']):>9}{_cell(phase['p50_ms']):>11}"
            f"{_cell(phase['p90_ms']):>11}{_cell(phase['p99_ms']):>11}"
            f"{_cell(phase['max_ms']):>11}"
        )
    lines.append(f"  (percentiles within {RELATIVE_ERROR:.2%}; max exact)")
    return "\n".join(lines) + "\n"
