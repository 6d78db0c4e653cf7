"""What every command shares on the way out: exit codes, and text-or-JSON reports.

Exit codes are stable, for scripts and systemd: 0 ok, 1 error, 2 usage, 3 config invalid,
4 check failed, 5 runtime failure. Expected failures print one clear line to stderr (no
traceback: a traceback means a bug).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import orjson

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_CHECK_FAILED = 4
EXIT_RUNTIME = 5

PROG = "bao-kms-provider"


def add_output_option(parser: argparse.ArgumentParser) -> None:
    """``--output text|json``, the same on every command that reports."""
    parser.add_argument("--output", choices=["text", "json"], default="text")


def emit(data: dict[str, Any], output: str, text: str) -> None:
    """Print *data* as indented JSON, or *text* as it is, on stdout."""
    if output == "json":
        write_json(data)
    else:
        sys.stdout.write(text)
        sys.stdout.flush()


def write_json(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")
    sys.stdout.flush()


def fail(command: str, message: object) -> None:
    """The one line an expected failure prints to stderr: ``bao-kms-provider <command>: ...``."""
    prefix = f"{PROG} {command}" if command else PROG
    print(f"{prefix}: {message}", file=sys.stderr)
