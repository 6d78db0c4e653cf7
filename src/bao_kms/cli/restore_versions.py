"""``restore-versions --versions a,b``: put withdrawn versions back into Decrypt on this node.

The undo of ``retire-versions``. Lower ``min_decryption_version`` in OpenBao first: a restored
version below it fails closed (``key_retained_version_below_min_decryption``), because this
node would count on a version OpenBao refuses to decrypt with. Plan by default;
``--apply --expected-state-hash H`` writes.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..keys.rotation import restore
from ._key_state import add_common_options, plan_version_change, run_command


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "restore-versions", help="put withdrawn key versions back into Decrypt (undo retire)"
    )
    parser.add_argument(
        "--versions", type=version_list, required=True, metavar="A,B", help="e.g. 1,2"
    )
    add_common_options(parser, writes=True)
    parser.set_defaults(run=run)


def version_list(value: str) -> list[int]:
    parts = value.split(",")
    if not all(part.strip().isdigit() and int(part) >= 1 for part in parts):
        raise argparse.ArgumentTypeError("must be version numbers separated by commas, e.g. 1,2")
    return [int(part) for part in parts]


def run(args: argparse.Namespace) -> int:
    return run_command("restore-versions", args, lambda config: change(config, args))


def change(config: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str, int]:
    versions = args.versions
    return plan_version_change(
        config,
        args,
        command=f"restore-versions --versions {','.join(map(str, versions))}",
        change=lambda state: restore(state, versions),
        report_key="restore_versions",
        nothing="nothing to do: none of these versions is withdrawn",
        plan=lambda chosen: (
            f"plan: version(s) {', '.join(map(str, chosen))} become retired (decryptable) "
            f"again; lower min_decryption_version to {min(chosen)} or below in OpenBao first"
        ),
    )
