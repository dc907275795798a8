"""What a run writes, on its way to the server: log records (the worker's and the trainer's) and
the process's stdout and stderr, kept in a bounded buffer until the heartbeat thread ships them.

The buffer never blocks the trainer: when the server is away long enough to fill it, the oldest
lines go and are counted, and the count travels with the next batch so the server can say so."""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import logging
import sys
import threading
from collections.abc import Iterator

from core.protocol import LOG_BATCH_LINES, LOG_LINE_CHARS, LogLine

QUIET = ("httpx", "httpcore")  # one line per request: the heartbeats would drown the run's own lines
BATCH_CHARS = 400_000  # well under the server's body limit


class LogBuffer(logging.Handler):
    def __init__(self, capacity: int = 5000):
        super().__init__()
        self.setFormatter(logging.Formatter("%(message)s"))
        self.addFilter(lambda record: not record.name.startswith(QUIET))
        self._lines: collections.deque[LogLine] = collections.deque()
        self._capacity, self._dropped = capacity, 0
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.add(record.levelname, record.name, self.format(record), record.created)
        except Exception:  # a logging handler must never raise into the code that logged
            self.handleError(record)

    def add(self, level: str, source: str, message: str, created: float | None = None) -> None:
        ts = dt.datetime.fromtimestamp(created, dt.UTC) if created else dt.datetime.now(dt.UTC)
        line = LogLine(ts=ts, level=level[:10], source=source[:100], message=message[:LOG_LINE_CHARS])
        with self._lock:
            if len(self._lines) >= self._capacity:
                self._lines.popleft()
                self._dropped += 1
            self._lines.append(line)

    def take(self) -> tuple[list[LogLine], int]:
        """The oldest lines that fit one batch, and the lines dropped since the last batch."""
        batch, chars = [], 0
        with self._lock:
            while self._lines and len(batch) < LOG_BATCH_LINES and chars < BATCH_CHARS:
                line = self._lines.popleft()
                batch.append(line)
                chars += len(line.message) + 40
            dropped, self._dropped = self._dropped, 0
        return batch, dropped

    def put_back(self, batch: list[LogLine], dropped: int) -> None:
        """A batch that did not land goes first again, as far as the buffer has room."""
        with self._lock:
            room = max(0, self._capacity - len(self._lines))
            self._lines.extendleft(reversed(batch[len(batch) - room:] if room < len(batch) else batch))
            self._dropped += dropped + max(0, len(batch) - room)

    def pending(self) -> int:
        with self._lock:
            return len(self._lines)

    @contextlib.contextmanager
    def capturing(self) -> Iterator[LogBuffer]:
        """Collect every log record and what is printed, until the block ends."""
        root = logging.getLogger()
        root.addHandler(self)
        out, err = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = _Tee(out, self, "stdout", "INFO"), _Tee(err, self, "stderr", "WARNING")
        try:
            yield self
        finally:
            sys.stdout, sys.stderr = out, err
            root.removeHandler(self)


class _Tee:
    """Writes through to the real stream and keeps each complete line."""

    def __init__(self, stream, buffer: LogBuffer, source: str, level: str):
        self._stream, self._buffer, self._source, self._level = stream, buffer, source, level
        self._partial = ""

    def write(self, text: str) -> int:
        self._stream.write(text)
        *lines, self._partial = (self._partial + text).split("\n")
        for line in lines:
            if line.strip():
                self._buffer.add(self._level, self._source, line)
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def __getattr__(self, name: str):
        return getattr(self._stream, name)
