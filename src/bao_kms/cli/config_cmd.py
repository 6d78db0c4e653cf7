"""``config check|schema``: validate a config file, or print the config's JSON Schema.

Named ``config_cmd`` so it does not read as the :mod:`bao_kms.config` package.
"""

from __future__ import annotations

import argparse
import os

from ..config import ENV_CONFIG, Config, load_config
from ._output import EXIT_OK, EXIT_USAGE, add_output_option, emit, fail, write_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="check a config file or print its JSON Schema")
    parser.add_argument("action", choices=["check", "schema"])
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    add_output_option(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if args.action == "schema":
        write_json(Config.model_json_schema(by_alias=True))
        return EXIT_OK
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        fail("config check", f"--config FILE (or {ENV_CONFIG}) is required")
        return EXIT_USAGE
    config = load_config(path)  # ConfigError: main() prints it and exits 3
    emit(
        {"valid": True, "config": config.model_dump(mode="json", by_alias=True)},
        args.output,
        f"{path}: valid\n",
    )
    return EXIT_OK
