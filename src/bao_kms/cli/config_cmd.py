"""``config check|schema``: validate a config file, or print the config's JSON Schema.

``check`` also runs ``doctor``'s checks that need no OpenBao (the files the config names, the
socket path and its directory), unless ``--skip-files`` says the file is checked away from
the node it is for. Named ``config_cmd`` so it does not read as the :mod:`bao_kms.config`
package.

Nothing is printed from the file beyond field paths: errors never echo a key or value, and
``--output json`` shows each identity label as ``sha256:<H(label)>`` (H as in the annotations
and docs/wire-format.md), never the label itself.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from .. import _codec
from ..config import ENV_CONFIG, Config, load_config
from ..doctor.checks import Outcome
from ..doctor.local import file_findings
from ..errors import ConfigError
from ._output import EXIT_OK, EXIT_USAGE, add_output_option, emit, fail, write_json


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("config", help="check a config file or print its JSON Schema")
    parser.add_argument("action", choices=["check", "schema"])
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    parser.add_argument(
        "--skip-files",
        action="store_true",
        help="validate the document only, not the files and socket directory it names "
        "(for a config checked away from its node)",
    )
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
    notes: list[str] = []
    config = load_config(path, warn=notes.append)  # ConfigError: main() prints it, exits 3
    findings = [] if args.skip_files else file_findings(path, config)
    failed = [finding for finding in findings if finding.outcome is Outcome.FAIL]
    if failed:
        problems = "\n".join(f"  {finding.check.value}: {finding.message}" for finding in failed)
        raise ConfigError(f"config file {path} names files that are not usable:\n{problems}")
    warnings = "".join(f"warning: {note}\n" for note in notes) + "".join(
        f"warning: {finding.check.value}: {finding.message}\n"
        for finding in findings
        if finding.outcome is Outcome.WARN
    )
    emit(
        {
            "valid": True,
            "config": public_dump(config),
            "warnings": notes,
            "checks": [finding.as_dict() for finding in findings],
        },
        args.output,
        f"{path}: valid\n{warnings}",
    )
    return EXIT_OK


def _hashed(label: str) -> str:
    return "sha256:" + _codec.hash_label(label)


def public_dump(config: Config) -> dict[str, Any]:
    """The config as JSON, with every identity label replaced by its hash."""
    document = config.model_dump(mode="json", by_alias=True)
    identity = document["identity"]
    for key, value in identity.items():
        identity[key] = _hashed(value)
    namespace = document["openbao"].get("namespace")
    if namespace:
        document["openbao"]["namespace"] = _hashed(namespace)
    return document
