"""CachedTimeFormatter writes exactly what logging's default formatter writes."""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Callable

import pytest

from trimail.log_format import CachedTimeFormatter, LineHandler

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


def _written(handler: logging.Handler, stream: io.StringIO, record: logging.LogRecord) -> str:
    stream.seek(0)
    stream.truncate()
    handler.handle(record)
    return stream.getvalue()


def _fail() -> None:
    raise ValueError("broken")


def _exception_record() -> logging.LogRecord:
    try:
        _fail()
    except ValueError:
        record = logging.makeLogRecord(
            {"msg": "delivery of %s failed", "args": ("Q1",), "exc_info": sys.exc_info()}
        )
    return record


@pytest.mark.parametrize(
    "make",
    [
        lambda: record_at(1_780_000_000.5),
        lambda: logging.makeLogRecord({"msg": "no arguments at all", "created": 2.5}),
        lambda: logging.makeLogRecord({"msg": "%d%% of %s", "args": (50, "x"), "created": 1.0}),
        _exception_record,
        lambda: logging.makeLogRecord({"msg": "here", "stack_info": "Stack (most recent...)"}),
    ],
)
def test_the_line_handler_writes_what_stream_handler_writes(
    make: Callable[[], logging.LogRecord],
) -> None:
    lean_out, plain_out = io.StringIO(), io.StringIO()
    lean = LineHandler(lean_out, "trimail")
    plain = logging.StreamHandler(plain_out)
    plain.setFormatter(CachedTimeFormatter(FORMAT))
    record = make()
    assert _written(lean, lean_out, record) == _written(plain, plain_out, record)
    assert lean_out.getvalue().endswith("\n")


def test_the_line_handler_honours_its_filters() -> None:
    out = io.StringIO()
    handler = LineHandler(out, "trimail")
    handler.addFilter(lambda record: "secret" not in record.getMessage())
    assert handler.handle(record_at(1.0, "a secret %s")) is False
    assert handler.handle(record_at(1.0, "public %s")) is True
    assert out.getvalue().endswith(" trimail: public Q1\n")


def test_a_record_that_cannot_be_formatted_goes_to_handle_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    handler = LineHandler(io.StringIO(), "trimail")
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    bad = record_at(1.0, "%d needs a number")  # args ("Q1",) is a string
    handler.handle(bad)
    assert failed == [bad]


def test_a_filter_that_answers_a_record_replaces_it_as_in_stream_handler() -> None:
    # Python 3.12+: a filter may return the record to log instead (here: an address hidden).
    # On 3.11 both handlers log the original; either way they must write the same.
    def redact(record: logging.LogRecord) -> logging.LogRecord:
        return logging.makeLogRecord(
            {**record.__dict__, "msg": record.msg.replace("%s", "[redacted]", 1), "args": ()}
        )

    lean_out, plain_out = io.StringIO(), io.StringIO()
    lean = LineHandler(lean_out, "trimail")
    plain = logging.StreamHandler(plain_out)
    plain.setFormatter(CachedTimeFormatter(FORMAT))
    for handler in (lean, plain):
        handler.addFilter(redact)  # type: ignore[arg-type]  # 3.12+ filters may answer a record
    record = record_at(1.5, "message from %s")
    assert _written(lean, lean_out, record) == _written(plain, plain_out, record)
