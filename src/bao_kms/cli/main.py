"""The ``bao-kms-provider`` command: argument parsing and dispatch, nothing else.

Each subcommand is a module of this package with ``add_parser(subparsers)``, which adds its
parser and sets ``run``, and ``run(args) -> int``, which returns the exit code (see
:mod:`._output`). Registering a command is one line in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import traceback
from typing import NoReturn

from ..errors import ConfigError
from ..logs import configure_logging
from ._output import EXIT_CONFIG, EXIT_ERROR, EXIT_USAGE, PROG, fail

#: the subcommand modules, in ``--help`` order
COMMANDS = (
    "serve",
    "dev",
    "probe",
    "conformance",
    "config_cmd",
    "init",
    "policy",
    "doctor",
    "rotation_plan",
    "retire_versions",
    "restore_versions",
    "rebuild_state",
    "version",
)

log = logging.getLogger("bao_kms.cli")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse exits 2 already; keep it short
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Kubernetes KMS v2 provider backed by OpenBao Transit.")
    subparsers = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in COMMANDS:
        importlib.import_module(f"{__package__}.{name}").add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
        return code
    except ConfigError as error:
        fail("", error)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return EXIT_ERROR
    except BrokenPipeError:
        # the reader went away (`... | head`): not a bug; keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR
    except Exception as error:  # noqa: BLE001 - a bug: say so without its message or a traceback
        if not logging.getLogger("bao_kms").handlers:
            configure_logging("error")
        log.error(
            "internal error",
            extra={
                "error_type": type(error).__name__,
                "stack": "".join(traceback.format_tb(error.__traceback__)),
            },
        )
        fail("", f"internal error ({type(error).__name__}); please report it")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
