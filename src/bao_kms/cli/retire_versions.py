"""``retire-versions --before-version N``: withdraw old versions from Decrypt on this node.

The step before raising ``min_decryption_version`` in OpenBao, once every resource has been
rewritten with a newer version: the registry marks the retired versions below N *withdrawn*,
so this node stops counting on them (and answers FAILED_PRECONDITION for their key_ids, the
same before and after a restart). Raising ``min_decryption_version`` above a version that is
not withdrawn fails closed. Plan by default; ``--apply --expected-state-hash H`` writes.
Undo: ``restore-versions``.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..keys.rotation import retire
from ._key_state import add_common_options, plan_version_change, run_command


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "retire-versions",
        help="withdraw retired key versions below N from Decrypt (before raising "
        "min_decryption_version)",
    )
    parser.add_argument("--before-version", type=int, required=True, metavar="N")
    add_common_options(parser, writes=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_command("retire-versions", args, lambda config: change(config, args))


def change(config: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str, int]:
    before = args.before_version
    return plan_version_change(
        config,
        args,
        command=f"retire-versions --before-version {before}",
        change=lambda state: retire(state, before),
        report_key="withdraw_versions",
        nothing=f"nothing to do: no retired version below {before}",
        plan=lambda chosen: (
            f"plan: withdraw version(s) {', '.join(map(str, chosen))} from Decrypt; their "
            "key_ids will get FAILED_PRECONDITION"
        ),
        after=lambda _: (
            "next: once every node shows them withdrawn (`rotation-plan`), raise "
            f"min_decryption_version to {before} in OpenBao"
        ),
    )
