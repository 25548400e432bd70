"""Latency histograms and error counts that merge exactly across sessions and processes.

Why a histogram and not raw samples: a ten-minute run at 10 000 messages/s takes six million
transactions, each with several phases; keeping every sample would cost gigabytes, and
shipping them from worker processes would cost more. A histogram is bounded (a few thousand
buckets cover 1 ns to hours) and merges by adding counts.

Bucketing is HDR-like and integer-only, so recording costs a few bit operations on the hot
path: values below 256 ns have a bucket each (exact); a larger value ``v`` with
``s = v.bit_length() - 8`` goes to bucket ``(s << 7) + (v >> s)``, i.e. 128 equal buckets per
power of two, each at most 1/128 of its lower bound wide. A percentile reports its bucket's
midpoint, clamped to the exact minimum and maximum, so its relative error is at most
``RELATIVE_ERROR`` = 1/256 (< 0.4 %). Merging adds counts bucket by bucket: the merge of two
histograms is exactly the histogram of the union of their samples, so merged percentiles
(across sessions or worker processes) carry the same bound and nothing more. Count, sum, min
and max are kept exactly.

Percentiles use the nearest-rank definition: p is the smallest recorded value with at least
p % of the samples at or below it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import attrs

_SUB_BUCKET_BITS = 7
#: Values below this have a bucket each.
EXACT_BELOW = 1 << (_SUB_BUCKET_BITS + 1)
#: Bound on |reported - true| / true for any percentile (bucket midpoint, half-width 1/256).
RELATIVE_ERROR = 1 / (1 << (_SUB_BUCKET_BITS + 1))

#: The phases measured, in the order the report lists them.
PHASES = ("connect", "greeting", "ehlo", "tls", "mail", "rcpt", "data", "transaction")

#: A JSON value as json.loads returns it (the worker protocol and the report).
JsonValue = str | int | float | bool | None | list["JsonValue"] | dict[str, "JsonValue"]


class ResultFormatError(ValueError):
    """Serialized stats (a worker's output) that are not what ``to_json`` writes."""


def bucket_index(value: int) -> int:
    """The bucket of a non-negative value (negatives, which a clock step could give, are 0)."""
    if value < EXACT_BELOW:
        return value if value > 0 else 0
    shift = value.bit_length() - (_SUB_BUCKET_BITS + 1)
    return (shift << _SUB_BUCKET_BITS) + (value >> shift)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The smallest and largest value of a bucket (inclusive)."""
    if index < EXACT_BELOW:
        return index, index
    shift = (index >> _SUB_BUCKET_BITS) - 1
    mantissa = index - (shift << _SUB_BUCKET_BITS)
    return mantissa << shift, ((mantissa + 1) << shift) - 1


class Histogram:
    """Counts of integer samples (nanoseconds here) in log buckets; see the module docstring."""

    __slots__ = ("count", "counts", "maximum", "minimum", "total")

    def __init__(self) -> None:
        self.counts: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.minimum = 0
        self.maximum = 0

    def record(self, value: int) -> None:
        if value < EXACT_BELOW:
            index = value if value > 0 else 0
        else:
            shift = value.bit_length() - (_SUB_BUCKET_BITS + 1)
            index = (shift << _SUB_BUCKET_BITS) + (value >> shift)
        counts = self.counts
        counts[index] = counts.get(index, 0) + 1
        if self.count == 0:
            self.minimum = self.maximum = value
        elif value > self.maximum:
            self.maximum = value
        elif value < self.minimum:
            self.minimum = value
        self.count += 1
        self.total += value

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s samples: afterwards self is the histogram of both sample sets."""
        if other.count == 0:
            return
        counts = self.counts
        for index, count in other.counts.items():
            counts[index] = counts.get(index, 0) + count
        if self.count == 0:
            self.minimum, self.maximum = other.minimum, other.maximum
        else:
            self.minimum = min(self.minimum, other.minimum)
            self.maximum = max(self.maximum, other.maximum)
        self.count += other.count
        self.total += other.total

    def percentile(self, percent: float) -> int:
        """Nearest-rank percentile (0 < percent <= 100); 0 when empty."""
        if self.count == 0:
            return 0
        if percent >= 100:
            return self.maximum
        rank = max(1, math.ceil(percent / 100 * self.count))
        seen = 0
        for index in sorted(self.counts):
            seen += self.counts[index]
            if seen >= rank:
                low, high = bucket_bounds(index)
                return min(max((low + high) // 2, self.minimum), self.maximum)
        return self.maximum  # unreachable: the counts add up to count

    def mean(self) -> float:
        return self.total / self.count if self.count else 0.0

    def to_json(self) -> dict[str, JsonValue]:
        """Sparse buckets as ``[[index, count], ...]`` for the worker protocol."""
        buckets: list[JsonValue] = [[index, self.counts[index]] for index in sorted(self.counts)]
        return {
            "count": self.count,
            "total": self.total,
            "min": self.minimum,
            "max": self.maximum,
            "buckets": buckets,
        }

    @classmethod
    def from_json(cls, data: JsonValue) -> Histogram:
        """The inverse of to_json; ValueError on anything else (a worker's output is checked)."""
        if not isinstance(data, dict):
            raise ResultFormatError("histogram: expected an object")
        histogram = cls()
        histogram.count = _int(data, "count")
        histogram.total = _int(data, "total")
        histogram.minimum = _int(data, "min")
        histogram.maximum = _int(data, "max")
        buckets = data.get("buckets")
        if not isinstance(buckets, list):
            raise ResultFormatError("histogram: buckets must be a list")
        for pair in buckets:
            if (
                not isinstance(pair, list)
                or len(pair) != 2
                or not all(type(item) is int and item >= 0 for item in pair)
            ):
                raise ResultFormatError("histogram: each bucket must be [index, count]")
            index, count = pair
            assert isinstance(index, int) and isinstance(count, int)
            histogram.counts[index] = histogram.counts.get(index, 0) + count
        if sum(histogram.counts.values()) != histogram.count:
            raise ResultFormatError("histogram: bucket counts do not add up to count")
        return histogram


def _int(data: Mapping[str, JsonValue], key: str) -> int:
    value = data.get(key)
    if type(value) is not int:
        raise ResultFormatError(f"{key}: expected an integer")
    assert isinstance(value, int)
    return value


def _counter(data: Mapping[str, JsonValue], key: str) -> dict[str, int]:
    value = data.get(key)
    if not isinstance(value, dict):
        raise ResultFormatError(f"{key}: expected an object")
    return {name: _int(value, name) for name in value}


def _add_counts(into: dict[str, int], counts: Mapping[str, int]) -> None:
    for key, count in counts.items():
        into[key] = into.get(key, 0) + count


@attrs.define
class RunStats:
    """Everything a run measured; sessions update it in place (one Trio thread, no locks).

    ``attempted`` counts every message slot used: a transaction, or a failed attempt to open a
    session, which also uses one (so a count run against a dead server still ends).
    ``messages`` counts transactions whose final reply was 2xx. ``errors_by_code`` counts, per
    reply code, the first error reply of each transaction or session setup (the 503s that
    follow a refused MAIL in a pipeline are its consequences, not counted again);
    ``connection_errors`` counts sessions lost or never opened, by kind (refused, timeout,
    closed, reset, tls, bad_reply, ...).
    """

    phases: dict[str, Histogram] = attrs.Factory(lambda: {name: Histogram() for name in PHASES})
    attempted: int = 0
    messages: int = 0
    bytes_delivered: int = 0
    errors_by_code: dict[str, int] = attrs.Factory(dict)
    connection_errors: dict[str, int] = attrs.Factory(dict)
    seconds: float = 0.0
    #: The run hit --max-seconds and was cut short.
    capped: bool = False
    #: The run was stopped by Ctrl-C (SIGINT); the figures cover what was done until then.
    interrupted: bool = False
    #: Clock reading when the last transaction ended (the runner's end of the run; not merged).
    finished_at: int = 0

    @property
    def errors(self) -> int:
        return sum(self.errors_by_code.values()) + sum(self.connection_errors.values())

    def reply_error(self, code: int) -> None:
        key = str(code)
        self.errors_by_code[key] = self.errors_by_code.get(key, 0) + 1

    def connection_error(self, kind: str) -> None:
        self.connection_errors[kind] = self.connection_errors.get(kind, 0) + 1

    def merge(self, other: RunStats) -> None:
        """Add another run that went on at the same time (a worker): seconds is the longest."""
        for name, histogram in other.phases.items():
            self.phases.setdefault(name, Histogram()).merge(histogram)
        self.attempted += other.attempted
        self.messages += other.messages
        self.bytes_delivered += other.bytes_delivered
        _add_counts(self.errors_by_code, other.errors_by_code)
        _add_counts(self.connection_errors, other.connection_errors)
        self.seconds = max(self.seconds, other.seconds)
        self.capped = self.capped or other.capped
        self.interrupted = self.interrupted or other.interrupted

    def to_json(self) -> dict[str, JsonValue]:
        """Raw, mergeable form (the worker protocol): counts and full histograms."""
        return {
            "attempted": self.attempted,
            "messages": self.messages,
            "bytes_delivered": self.bytes_delivered,
            "errors_by_code": dict(self.errors_by_code),
            "connection_errors": dict(self.connection_errors),
            "seconds": self.seconds,
            "capped": self.capped,
            "interrupted": self.interrupted,
            "histograms": {name: h.to_json() for name, h in self.phases.items()},
        }

    @classmethod
    def from_json(cls, data: JsonValue) -> RunStats:
        if not isinstance(data, dict):
            raise ResultFormatError("stats: expected an object")
        seconds = data.get("seconds")
        capped = data.get("capped")
        interrupted = data.get("interrupted")
        histograms = data.get("histograms")
        if type(seconds) not in (int, float) or not isinstance(seconds, int | float):
            raise ResultFormatError("seconds: expected a number")
        if not isinstance(capped, bool):
            raise ResultFormatError("capped: expected a boolean")
        if not isinstance(interrupted, bool):
            raise ResultFormatError("interrupted: expected a boolean")
        if not isinstance(histograms, dict):
            raise ResultFormatError("histograms: expected an object")
        return cls(
            phases={name: Histogram.from_json(value) for name, value in histograms.items()},
            attempted=_int(data, "attempted"),
            messages=_int(data, "messages"),
            bytes_delivered=_int(data, "bytes_delivered"),
            errors_by_code=_counter(data, "errors_by_code"),
            connection_errors=_counter(data, "connection_errors"),
            seconds=float(seconds),
            capped=capped,
            interrupted=interrupted,
        )
