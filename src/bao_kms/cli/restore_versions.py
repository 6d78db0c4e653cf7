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
from ..keys.rotation import PlanError, restore
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
    registry = file_registry(config)
    stored = registry.read()
    if stored is None:
        raise CommandFailed("there is no key registry yet: nothing to restore", EXIT_ERROR)
    try:
        new_state, chosen = restore(stored.state, args.versions)
    except PlanError as error:
        raise CommandFailed(str(error), EXIT_ERROR) from None
    report: dict[str, Any] = {
        "state": stored_facts(stored),
        "restore_versions": chosen,
        "applied": False,
    }
    lines = [f"state hash: {stored.hash} (generation {stored.generation})"]
    if not chosen:
        lines.append("nothing to do: none of these versions is withdrawn")
    else:
        versions = ", ".join(map(str, chosen))
        lines.append(
            f"plan: version(s) {versions} become retired (decryptable) again; lower "
            f"min_decryption_version to {min(chosen)} or below in OpenBao first"
        )
    if chosen and args.apply:
        apply_guard(args, stored.hash)
        written = registry.save(new_state, stored)
        report |= {"applied": True, "new_state": stored_facts(written)}
        lines.append(f"written: generation {written.generation}, hash {written.hash}")
    elif chosen:
        lines.append(
            f"to apply: restore-versions --versions {','.join(map(str, chosen))} --apply "
            f"--expected-state-hash {stored.hash}"
        )
    report["versions"] = describe_versions(new_state, identity(config))
    lines.append("versions after:\n" + versions_text(report["versions"]).rstrip("\n"))
    return report, "\n".join(lines) + "\n", EXIT_OK
