"""The provider's JSON log lines, captured in-process as the ``serve`` command would print them.

:func:`capture` attaches the production formatter (:class:`bao_kms.logs.JsonFormatter`) to the
``bao_kms`` logger at info level, so tests read exactly the lines an operator would, as text
(for leak scans) and parsed (for field checks).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bao_kms.logs import JsonFormatter


class Lines(logging.Handler):
    """Formatted lines, thread-safe; :meth:`find` returns the parsed ones that match."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self._lock_lines = threading.Lock()
        self.text: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        with self._lock_lines:
            self.text.append(line)

    def parsed(self) -> list[dict[str, Any]]:
        with self._lock_lines:
            return [json.loads(line) for line in self.text]

    def find(self, **fields: Any) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.parsed()
            if all(entry.get(key) == value for key, value in fields.items())
        ]

    def mark(self) -> int:
        """A place in the log: pass it to :meth:`last` to look only at lines written since."""
        with self._lock_lines:
            return len(self.text)

    def last(self, timeout: float = 5.0, *, after: int = 0, **fields: Any) -> dict[str, Any]:
        """The newest line matching *fields* written after the :meth:`mark` *after*, waiting up
        to *timeout* s for one to appear.

        The monitor publishes a snapshot before it logs the transition, so a test that has just
        seen Status change may read the log a moment before the line is written; and a line
        from before the change (start-up logs ``status_healthy`` too) must not stand in for it.
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock_lines:
                since = self.text[after:]
            found = [
                entry
                for entry in map(json.loads, since)
                if all(entry.get(key) == value for key, value in fields.items())
            ]
            if found:
                return found[-1]
            if time.monotonic() > deadline:
                raise AssertionError(f"no log line with {fields} within {timeout} s")
            time.sleep(0.02)


@contextmanager
def capture(level: int = logging.INFO) -> Iterator[Lines]:
    root = logging.getLogger("bao_kms")
    saved = (root.level, root.propagate)
    lines = Lines()
    root.addHandler(lines)
    root.setLevel(level)
    try:
        yield lines
    finally:
        root.removeHandler(lines)
        root.setLevel(saved[0])
        root.propagate = saved[1]
