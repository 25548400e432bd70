"""Log lines as logging's default formatter writes them, made cheap enough for one per message.

At thousands of messages a second, ``Formatter.formatTime`` (a ``localtime`` and a
``strftime`` per line) was the costliest step of a log line; the date and time to the second
change once a second, so they are formatted once a second. ``LineHandler`` then skips the
generic steps of a handler that do nothing for ``trimail serve``'s one-line records (16k
instructions per line when measured, in session 5). ``InfoLines`` goes one step further for
the lines written per message and per session: where nothing but one
``LineHandler`` could see the record, it hands that handler the text and makes no record.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from typing import TextIO

#: logging.Formatter.default_msec_format (typed there as optional).
MSEC_FORMAT = "%s,%03d"
#: From Python 3.13 a LogRecord takes its time from ``time.time_ns()``, and its milliseconds
#: from the nanoseconds (they can differ by one from the float formula of 3.11 and 3.12).
_RECORD_TIME_NS = sys.version_info >= (3, 13)


class CachedTimeFormatter(logging.Formatter):
    """``%(asctime)s`` exactly as ``logging.Formatter`` renders it by default
    (``2026-11-29 10:04:32,210``), with the part before the milliseconds cached per second."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._prefix = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self.time_text(record.created, record.msecs)

    def time_text(self, created: float, msecs: float) -> str:
        """``%(asctime)s`` of a record ``created`` at this ``time.time()``, ``msecs`` past it."""
        second = int(created)
        if second != self._second:
            self._prefix = time.strftime(self.default_time_format, self.converter(created))
            self._second = second
        return MSEC_FORMAT % (self._prefix, msecs)


class LineHandler(logging.StreamHandler[TextIO]):
    """``StreamHandler`` with ``CachedTimeFormatter("%(asctime)s NAME: %(message)s")``, same
    text, fewer steps: a record without an exception or a stack is rendered in one f-string
    (no ``usesTime`` search, no ``%``-formatting through the record's ``__dict__``), the filter
    call is skipped when there are no filters, and the write and the flush take the lock once."""

    def __init__(self, stream: TextIO, name: str) -> None:
        super().__init__(stream)
        self._name = name
        self._time = CachedTimeFormatter(f"%(asctime)s {name}: %(message)s")
        self.setFormatter(self._time)

    def handle(self, record: logging.LogRecord) -> bool:
        if self.filters:
            # From Python 3.12 a filter may answer a record to log instead of this one.
            passed: object = self.filter(record)
            if not passed:
                return False
            if isinstance(passed, logging.LogRecord):
                record = passed
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info or record.exc_text or record.stack_info:
                line = self.format(record)
            else:
                line = f"{self._time.formatTime(record)} {self._name}: {record.getMessage()}"
            self._write_line(line)
        except RecursionError:  # as logging.StreamHandler.emit does
            raise
        except Exception:
            self.handleError(record)

    def _write_line(self, line: str) -> None:
        with self.lock:  # type: ignore[union-attr]  # created by Handler.__init__
            self.stream.write(line + self.terminator)
            self.stream.flush()

    def write_message(self, message: str) -> None:
        """Write what ``emit`` writes for a record of ``message`` (no exception) made now."""
        if _RECORD_TIME_NS:  # as LogRecord computes them
            ns = time.time_ns()
            created = ns / 1e9
            msecs = (ns % 1_000_000_000) // 1_000_000
            if msecs == 999 and int(created) != ns // 1_000_000_000:  # rounded up a second
                msecs = 0
        else:
            created = time.time()
            msecs = int((created - int(created)) * 1000)
        try:
            self._write_line(f"{self._time.time_text(created, msecs)} {self._name}: {message}")
        except RecursionError:
            raise
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": message, "created": created}))


def sole_line_handler(logger: logging.Logger) -> LineHandler | None:
    """The one handler an INFO record of ``logger`` would reach, if it is a ``LineHandler``
    and nothing could change or drop the record on its way (a filter, an application's record
    factory or logger class); otherwise None."""
    if (
        logger.disabled
        or type(logger) is not logging.Logger
        or logging.getLogRecordFactory() is not logging.LogRecord
        or not logger.isEnabledFor(logging.INFO)
    ):
        return None
    found: LineHandler | None = None
    current: logging.Logger | None = logger
    while current is not None:
        if current.filters or current.disabled:
            return None
        handlers = current.handlers
        if handlers:
            if found is not None or len(handlers) != 1:
                return None
            handler = handlers[0]
            if type(handler) is not LineHandler or handler.filters or handler.level > logging.INFO:
                return None
            found = handler
        if not current.propagate:
            break
        current = current.parent
    return found


class InfoLines:
    """``logger.info(msg, *args)`` for the lines a server writes per message and per session,
    cheaper when ``configure_server_logging`` set logging up.

    Making the ``LogRecord`` is most of what a line costs through ``logging``: ~28k of ~43k
    instructions, 5% of all the work for a 1 KiB message. When the only thing that would see
    the record is one ``LineHandler`` without filters (``trimail serve``'s setup), the text is
    handed to it directly, and it writes the very same line. Any other setup (an application's
    own handlers, pytest's ``caplog``, a filter anywhere, INFO disabled) gets the record as
    usual. The setup is checked on every call, so a change made later is followed.
    """

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    def __call__(self, msg: str, *args: object) -> None:
        handler = sole_line_handler(self._logger)
        # Only where logging would format ``msg % args`` as it is: with arguments, and not one
        # mapping (which logging unwraps); a line that fails to format goes to logging too,
        # which reports it through the handler's handleError rather than raising.
        if handler is not None and args and not (len(args) == 1 and isinstance(args[0], Mapping)):
            try:
                message = msg % args
            except Exception:  # logging reports it, below
                pass
            else:
                handler.write_message(message)
                return
        self._logger.info(msg, *args)


def configure_server_logging(stream: TextIO, name: str = "trimail") -> None:
    """``trimail serve``'s logging: one line per message and per session on ``stream``, made
    cheap: the records carry no caller, thread or process lookups (the logging docs' own
    optimisation), since at thousands of messages a second those cost more than the line."""
    logging._srcfile = None  # no stack walk per record to find the calling line
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.basicConfig(level=logging.INFO, handlers=[LineHandler(stream, name)])
