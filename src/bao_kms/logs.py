"""JSON-lines logging with stable field names.

Each record is one JSON object: ``ts`` (RFC 3339 UTC), ``level``, ``logger``, ``event`` (a
stable snake_case name when the call site gives one, else the message), ``msg`` and any fields
passed through ``extra=``. The fields the provider uses keep one spelling everywhere: ``rpc``,
``code``, ``reason``, ``duration_ms``, ``key_id_hash`` (:func:`short_hash`, never a key_id),
``error_class`` (the OpenBao answer table's word), ``openbao_request_id``. Call sites pass only
secret-free values (reason words, codes, hashes, versions, counts); this module adds nothing
from the request. Exceptions are logged as their class and stack frames, never their message,
which for a bug could quote a value.
"""

from __future__ import annotations

import hashlib
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable
from typing import TextIO

import orjson

_STANDARD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = {
            key: value
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        }
        message = record.getMessage()
        event = extras.pop("event", None)
        # the fixed fields go last so no extra= can overwrite them
        entry = extras | {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": event if isinstance(event, str) and event else message,
            "msg": message,
        }
        if record.exc_info and record.exc_info[0] is not None:
            entry["error_type"] = record.exc_info[0].__name__
            entry["stack"] = "".join(traceback.format_tb(record.exc_info[2]))
        return orjson.dumps(entry, default=str).decode("utf-8")


def short_hash(value: str | bytes) -> str:
    """12 hex digits of SHA-256: enough to tell key_ids apart in logs and metric labels,
    never the value itself."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    return hashlib.sha256(data).hexdigest()[:12]


class LogThrottle:
    """At most one log line per key per *interval*: an outage during a cold-start burst fails
    thousands of calls the same way, and one line (with a count) says as much as all of them."""

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def admit(self, key: Hashable) -> int | None:
        """None to stay quiet; otherwise how many lines for *key* were suppressed before."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.interval:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return None
            self._last[key] = now
            return self._suppressed.pop(key, 0)


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Send the ``bao_kms`` loggers to *stream* (stderr) as JSON lines at *level*."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger("bao_kms")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False
    threading.excepthook = _log_thread_exception


def _log_thread_exception(args: threading.ExceptHookArgs) -> None:
    """Uncaught exceptions in threads (ours or grpcio's) become one JSON line, not a traceback.

    grpcio's serving thread can raise ``ValueError: server must be started and not shutting
    down`` when a connection event races ``Server.stop``; it is harmless, but stderr must stay
    machine-readable and free of exception messages.
    """
    if args.exc_type is SystemExit:
        return
    logging.getLogger("bao_kms.threads").warning(
        "uncaught exception in a background thread",
        extra={
            "thread": args.thread.name if args.thread else "",
            "error_type": args.exc_type.__name__,
            "stack": "".join(traceback.format_tb(args.exc_traceback)),
        },
    )
