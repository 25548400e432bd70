"""CachedTimeFormatter writes exactly what logging's default formatter writes."""

from __future__ import annotations

import logging

import pytest

from trimail.log_format import CachedTimeFormatter

FORMAT = "%(asctime)s trimail: %(message)s"


def record_at(created: float, message: str = "message %s accepted") -> logging.LogRecord:
    record = logging.makeLogRecord({"msg": message, "args": ("Q1",)})
    record.created = created
    record.msecs = (created - int(created)) * 1000
    return record


@pytest.mark.parametrize(
    "times",
    [
        [1_780_000_000.0, 1_780_000_000.5, 1_780_000_000.999],  # one second, cached
        [1_780_000_000.999, 1_780_000_001.0, 1_780_000_001.001],  # across a second
        [1_780_000_005.25, 1_780_000_001.75],  # back in time (clock stepped)
        [86_399.5, 86_400.5],  # across midnight UTC
    ],
)
def test_same_text_as_the_default_formatter(times: list[float]) -> None:
    cached, default = CachedTimeFormatter(FORMAT), logging.Formatter(FORMAT)
    for created in times:
        record = record_at(created)
        assert cached.format(record) == default.format(record)


def test_an_explicit_date_format_is_honoured() -> None:
    record = record_at(1_780_000_000.5)
    cached = CachedTimeFormatter(FORMAT)
    assert cached.formatTime(record, "%Y") == logging.Formatter(FORMAT).formatTime(record, "%Y")
