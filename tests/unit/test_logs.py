"""JSON-lines logs: one object per line, stable fields, exceptions without their messages."""

from __future__ import annotations

import calendar
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

import pytest

from bao_kms.logs import configure_logging

TS_RE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z")


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Configure logging into a StringIO; restore the ``bao_kms`` logger afterwards."""
    root = logging.getLogger("bao_kms")
    saved = (root.handlers[:], root.level, root.propagate)
    buffer = io.StringIO()
    configure_logging("info", stream=buffer)
    yield buffer
    root.handlers[:], root.level, root.propagate = saved


def records(buffer: io.StringIO) -> list[dict[str, Any]]:
    text = buffer.getvalue()
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def _secret() -> str:
    # Built at run time so the value never appears in a source line of a traceback frame.
    return "-".join(["s3cr3t", "t0ken", str(time.time_ns())])


def test_one_json_object_per_line_with_stable_fields(stream: io.StringIO) -> None:
    log = logging.getLogger("bao_kms.test")
    before = time.time()
    log.info("rotated to %s", "v7", extra={"key_id": "obk2.abc", "count": 3})
    log.warning("second")
    after = time.time()
    first, second = records(stream)
    assert first["level"] == "info"
    assert first["logger"] == "bao_kms.test"
    assert first["msg"] == "rotated to v7"
    assert first["key_id"] == "obk2.abc"
    assert first["count"] == 3
    assert TS_RE.fullmatch(first["ts"]), first["ts"]
    stamp = calendar.timegm(time.strptime(first["ts"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert before - 1 <= stamp <= after + 1  # UTC, not local time
    assert second["level"] == "warning"
    assert second["msg"] == "second"
    assert "key_id" not in second


def test_standard_record_attributes_are_not_dumped(stream: io.StringIO) -> None:
    logging.getLogger("bao_kms.test").info("plain")
    (entry,) = records(stream)
    assert set(entry) == {"ts", "level", "logger", "event", "msg"}
    assert entry["event"] == "plain"  # no event= given: the message stands in


def test_message_with_newline_stays_on_one_line(stream: io.StringIO) -> None:
    logging.getLogger("bao_kms.test").error("two\nlines", extra={"detail": "a\nb"})
    (entry,) = records(stream)
    assert entry["msg"] == "two\nlines"
    assert entry["detail"] == "a\nb"


def test_level_filters_records(stream: io.StringIO) -> None:
    log = logging.getLogger("bao_kms.test")
    log.debug("hidden")
    log.info("shown")
    assert [entry["msg"] for entry in records(stream)] == ["shown"]


def test_debug_level_lets_debug_through() -> None:
    root = logging.getLogger("bao_kms")
    saved = (root.handlers[:], root.level, root.propagate)
    buffer = io.StringIO()
    try:
        configure_logging("debug", stream=buffer)
        logging.getLogger("bao_kms.x").debug("detail")
    finally:
        root.handlers[:], root.level, root.propagate = saved
    (entry,) = records(buffer)
    assert entry["level"] == "debug"


def test_reconfiguring_does_not_duplicate_lines(stream: io.StringIO) -> None:
    configure_logging("info", stream=stream)
    logging.getLogger("bao_kms.test").info("once")
    assert len(records(stream)) == 1


def test_non_json_values_are_rendered_not_crashing(stream: io.StringIO) -> None:
    class Opaque:
        def __str__(self) -> str:
            return "opaque-thing"

    logging.getLogger("bao_kms.test").info("odd", extra={"thing": Opaque(), "raw": b"\x00\x01"})
    (entry,) = records(stream)
    assert entry["thing"] == "opaque-thing"
    assert isinstance(entry["raw"], str)


def _fails_deep_inside(secret: str) -> None:
    raise ValueError(secret)


def test_exception_logged_by_type_and_stack_without_message(stream: io.StringIO) -> None:
    secret = _secret()
    try:
        _fails_deep_inside(secret)
    except ValueError:
        logging.getLogger("bao_kms.test").exception("decrypt failed")
    line = stream.getvalue()
    assert secret not in line
    assert "s3cr3t" not in line
    (entry,) = records(stream)
    assert entry["level"] == "error"
    assert entry["msg"] == "decrypt failed"
    assert entry["error_type"] == "ValueError"
    assert "_fails_deep_inside" in entry["stack"]
    assert "test_logs.py" in entry["stack"]


def test_chained_exception_message_not_logged(stream: io.StringIO) -> None:
    secret = _secret()
    try:
        try:
            _fails_deep_inside(secret)
        except ValueError as inner:
            raise RuntimeError(f"wrapped: {inner}") from inner
    except RuntimeError:
        logging.getLogger("bao_kms.test").error("failed", exc_info=True)
    assert "s3cr3t" not in stream.getvalue()
    (entry,) = records(stream)
    assert entry["error_type"] == "RuntimeError"


def test_exception_with_notes_and_args_not_logged(stream: io.StringIO) -> None:
    secret = _secret()
    error = KeyError(secret)
    error.add_note(secret)
    try:
        raise error
    except KeyError:
        logging.getLogger("bao_kms.test").warning("lookup failed", exc_info=True)
    assert "s3cr3t" not in stream.getvalue()
    assert records(stream)[0]["error_type"] == "KeyError"


def test_exc_info_outside_an_exception_adds_nothing(stream: io.StringIO) -> None:
    logging.getLogger("bao_kms.test").error("no exception", exc_info=True)
    (entry,) = records(stream)
    assert "error_type" not in entry and "stack" not in entry


def test_extra_fields_cannot_overwrite_stable_fields(stream: io.StringIO) -> None:
    logging.getLogger("bao_kms.test").error(
        "real", extra={"level": "debug", "logger": "spoofed", "ts": "yesterday"}
    )
    (entry,) = records(stream)
    assert entry["level"] == "error"
    assert entry["logger"] == "bao_kms.test"
    assert TS_RE.fullmatch(entry["ts"])


def test_throttle_admits_one_line_per_key_per_interval() -> None:
    from bao_kms.logs import LogThrottle

    now = [0.0]
    throttle = LogThrottle(interval=10.0, clock=lambda: now[0])
    assert throttle.admit("a") == 0
    assert throttle.admit("a") is None
    assert throttle.admit("b") == 0  # keys are independent
    assert throttle.admit("a") is None
    now[0] = 10.0
    assert throttle.admit("a") == 2  # and the next line says how many were held back
    assert throttle.admit("a") is None
