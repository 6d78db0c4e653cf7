"""Log records of one logger, captured by a handler on that logger itself.

pytest's ``caplog`` listens on the root logger, which sees nothing once something in the same
process has called :func:`bao_kms.logs.configure_logging` (the ``bao_kms`` logger then stops
propagating). Attaching to the logger under test works whatever ran before.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def records_of(name: str, level: int = logging.DEBUG) -> Iterator[list[logging.LogRecord]]:
    """The records *name* (and its children) emit inside the block."""
    captured: list[logging.LogRecord] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    logger = logging.getLogger(name)
    handler = _Keep(level)
    saved_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(min(level, saved_level or level))
    try:
        yield captured
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved_level)
