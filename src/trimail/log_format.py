"""Log lines as logging's default formatter writes them, made cheap enough for one per message.

At thousands of messages a second, ``Formatter.formatTime`` (a ``localtime`` and a
``strftime`` per line) was the costliest step of a log line; the date and time to the second
change once a second, so they are formatted once a second.
"""

from __future__ import annotations

import logging
import time

#: logging.Formatter.default_msec_format (typed there as optional).
MSEC_FORMAT = "%s,%03d"


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
        second = int(record.created)
        if second != self._second:
            self._prefix = time.strftime(self.default_time_format, self.converter(record.created))
            self._second = second
        return MSEC_FORMAT % (self._prefix, record.msecs)
