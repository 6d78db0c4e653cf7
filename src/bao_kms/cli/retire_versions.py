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
from ..keys.rotation import PlanError, retire
from ._key_state import (
    CommandFailed,
    add_common_options,
    apply_guard,
    describe_versions,
    file_registry,
    identity,
    run_command,
    stored_facts,
    versions_text,
)
from ._output import EXIT_ERROR, EXIT_OK


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
    registry = file_registry(config)
    stored = registry.read()
    if stored is None:
        raise CommandFailed("there is no key registry yet: nothing to retire", EXIT_ERROR)
    try:
        new_state, chosen = retire(stored.state, args.before_version)
    except PlanError as error:
        raise CommandFailed(str(error), EXIT_ERROR) from None
    report: dict[str, Any] = {
        "state": stored_facts(stored),
        "withdraw_versions": chosen,
        "applied": False,
    }
    lines = [f"state hash: {stored.hash} (generation {stored.generation})"]
    if not chosen:
        lines.append(f"nothing to do: no retired version below {args.before_version}")
    else:
        lines.append(
            f"plan: withdraw version(s) {', '.join(map(str, chosen))} from Decrypt; their "
            "key_ids will get FAILED_PRECONDITION"
        )
    if chosen and args.apply:
        apply_guard(args, stored.hash)
        written = registry.save(new_state, stored)
        report |= {"applied": True, "new_state": stored_facts(written)}
        lines.append(f"written: generation {written.generation}, hash {written.hash}")
        lines.append(
            "next: once every node shows them withdrawn (`rotation-plan`), raise "
            f"min_decryption_version to {args.before_version} in OpenBao"
        )
    elif chosen:
        lines.append(
            f"to apply: retire-versions --before-version {args.before_version} --apply "
            f"--expected-state-hash {stored.hash}"
        )
    report["versions"] = describe_versions(new_state, identity(config))
    lines.append("versions after:\n" + versions_text(report["versions"]).rstrip("\n"))
    return report, "\n".join(lines) + "\n", EXIT_OK
