"""``policy``: print the least-privilege OpenBao policy (HCL) for a config's mount and key."""

from __future__ import annotations

import argparse
import os
import sys

from ..config import ENV_CONFIG, load_config
from ..manifests import openbao_policy
from ._output import EXIT_OK, EXIT_USAGE, fail


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "policy", help="print the least-privilege OpenBao policy (HCL) for a config"
    )
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        fail("policy", f"--config FILE (or {ENV_CONFIG}) is required")
        return EXIT_USAGE
    config = load_config(path)  # ConfigError: exit 3
    sys.stdout.write(openbao_policy(config.transit.mount_path, config.transit.key_name))
    sys.stdout.flush()
    return EXIT_OK
