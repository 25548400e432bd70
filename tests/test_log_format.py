"""CachedTimeFormatter, LineHandler and InfoLines write exactly what logging's defaults write."""

from __future__ import annotations

import io
import logging
import sys
import time
from collections.abc import Callable, Iterator
from unittest import mock

import pytest

from trimail.log_format import CachedTimeFormatter, InfoLines, LineHandler

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


@pytest.fixture
def records_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[mock.MagicMock]:
    """Counts the LogRecords Loggers make from now on; the clock stands still at a known time."""
    monkeypatch.setattr(time, "time", lambda: 1_780_000_000.25)
    monkeypatch.setattr(time, "time_ns", lambda: 1_780_000_000_250_000_000)  # 3.13+ records
    make_record = logging.Logger.makeRecord
    with mock.patch.object(
        logging.Logger, "makeRecord", autospec=True, side_effect=make_record
    ) as counting:
        yield counting


@pytest.fixture
def logger() -> Iterator[logging.Logger]:
    """A logger of its own under a parent of its own (a stand-in for the root logger)."""
    parent = logging.Logger("stand-in-root")
    child = logging.Logger("trimail-test")
    child.parent = parent
    parent.setLevel(logging.INFO)
    yield child


def _lines(logger: logging.Logger, *setup: Callable[[logging.Logger, io.StringIO], None]) -> str:
    out = io.StringIO()
    assert logger.parent is not None
    logger.parent.addHandler(LineHandler(out, "trimail"))
    for step in setup:
        step(logger, out)
    InfoLines(logger)("message %s from %s accepted: size=%d", "Q1", "192.0.2.7", 1024)
    return out.getvalue()


def _local(second: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))


#: The line at the fixture's time (1_780_000_000.25), in the machine's local time.
EXPECTED = f"{_local(1_780_000_000)},250 trimail: message Q1 from 192.0.2.7 accepted: size=1024\n"


def test_info_lines_skip_the_record_and_write_the_same_line(
    logger: logging.Logger, records_made: mock.MagicMock
) -> None:
    written = _lines(logger)
    assert written == EXPECTED
    assert records_made.call_count == 0
    # The same line through logging, for comparison.
    out = io.StringIO()
    other = logging.Logger("through-logging")
    other.addHandler(LineHandler(out, "trimail"))
    other.info("message %s from %s accepted: size=%d", "Q1", "192.0.2.7", 1024)
    assert out.getvalue() == written
    assert records_made.call_count == 1


def _add_filter_to_logger(logger: logging.Logger, out: io.StringIO) -> None:
    logger.addFilter(lambda record: True)


def _add_filter_to_handler(logger: logging.Logger, out: io.StringIO) -> None:
    assert logger.parent is not None
    logger.parent.handlers[0].addFilter(lambda record: True)


def _add_second_handler(logger: logging.Logger, out: io.StringIO) -> None:
    logger.addHandler(logging.NullHandler())


def _add_other_handler_type(logger: logging.Logger, out: io.StringIO) -> None:
    assert logger.parent is not None
    plain = logging.StreamHandler(out)
    plain.setFormatter(CachedTimeFormatter(FORMAT))
    logger.parent.handlers[:] = [plain]


@pytest.mark.parametrize(
    "setup",
    [_add_filter_to_logger, _add_filter_to_handler, _add_second_handler, _add_other_handler_type],
)
def test_info_lines_make_a_record_whenever_something_else_could_see_it(
    logger: logging.Logger,
    records_made: mock.MagicMock,
    setup: Callable[[logging.Logger, io.StringIO], None],
) -> None:
    written = _lines(logger, setup)
    assert records_made.call_count == 1
    assert written == EXPECTED


def _quiet_logger(logger: logging.Logger, out: io.StringIO) -> None:
    logger.setLevel(logging.WARNING)


def _quiet_handler(logger: logging.Logger, out: io.StringIO) -> None:
    assert logger.parent is not None
    logger.parent.handlers[0].setLevel(logging.WARNING)


def _not_propagating(logger: logging.Logger, out: io.StringIO) -> None:
    logger.propagate = False


@pytest.mark.parametrize("setup", [_quiet_logger, _quiet_handler, _not_propagating])
def test_info_lines_write_nothing_where_logging_writes_nothing(
    logger: logging.Logger,
    records_made: mock.MagicMock,
    setup: Callable[[logging.Logger, io.StringIO], None],
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert _lines(logger, setup) == ""
    assert capsys.readouterr().err == ""  # not even logging's last-resort handler


def test_info_lines_write_to_a_handler_of_the_logger_itself(
    logger: logging.Logger, records_made: mock.MagicMock
) -> None:
    out = io.StringIO()
    logger.propagate = False
    logger.addHandler(LineHandler(out, "trimail"))
    InfoLines(logger)("message %s from %s accepted: size=%d", "Q1", "192.0.2.7", 1024)
    assert out.getvalue() == EXPECTED
    assert records_made.call_count == 0


class ApplicationLogger(logging.Logger):
    """An application's logger class (``logging.setLoggerClass``) may change records."""

    def handle(self, record: logging.LogRecord) -> None:
        record.msg = "[node-7] " + str(record.msg)
        super().handle(record)


def test_info_lines_leave_an_application_logger_class_its_records(
    records_made: mock.MagicMock,
) -> None:
    parent = logging.Logger("stand-in-root")
    child = ApplicationLogger("trimail-test")
    child.parent = parent
    out = io.StringIO()
    parent.addHandler(LineHandler(out, "trimail"))
    InfoLines(child)("message %s accepted", "Q1")
    assert out.getvalue().endswith(" trimail: [node-7] message Q1 accepted\n")


class TaggedRecord(logging.LogRecord):
    """What an application's record factory (``logging.setLogRecordFactory``) may make."""

    def getMessage(self) -> str:
        return "[node-7] " + super().getMessage()


def test_info_lines_leave_an_application_record_factory_its_records(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging, "_logRecordFactory", TaggedRecord)
    tagged_line = " trimail: [node-7] message Q1 from 192.0.2.7 accepted: size=1024\n"
    assert _lines(logger).endswith(tagged_line)


@pytest.mark.parametrize(
    ("msg", "args", "expected"),
    [
        ("100% of the queue flushed", (), "100% of the queue flushed"),  # no args: no %
        ("session %(peer)s", ({"peer": "192.0.2.7"},), "session 192.0.2.7"),  # one mapping
    ],
)
def test_info_lines_format_as_logging_does(
    logger: logging.Logger, msg: str, args: tuple[object, ...], expected: str
) -> None:
    out = io.StringIO()
    assert logger.parent is not None
    logger.parent.addHandler(LineHandler(out, "trimail"))
    InfoLines(logger)(msg, *args)
    assert out.getvalue().endswith(f" trimail: {expected}\n")


class Unprintable:
    def __str__(self) -> str:
        raise ValueError("no text")


def test_a_line_that_cannot_be_formatted_is_reported_not_raised(
    logger: logging.Logger, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert logger.parent is not None
    handler = LineHandler(io.StringIO(), "trimail")
    logger.parent.addHandler(handler)
    failed: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", failed.append)
    InfoLines(logger)("session %s ended", Unprintable())
    assert len(failed) == 1
