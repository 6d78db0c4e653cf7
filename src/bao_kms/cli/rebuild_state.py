"""``rebuild-state``: a new key registry from live Transit metadata, for a node whose registry is
missing or damaged (Status ``state_missing`` / ``state_invalid``).

It trusts OpenBao's metadata as it is now, so it first shows exactly what that is: every
version with its creation time and key_id hash, which becomes active (the latest) and which
retired, what the file holds now (its hash, ``absent`` or ``damaged-…``), and what cannot be
known (versions below ``min_decryption_version`` are not listed by OpenBao). Copying the files
from a healthy node keeps more (withdrawn versions, the key's full history); prefer that when
one exists. ``--apply --expected-state-hash H`` (H as shown) writes; a valid registry is never
replaced.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..config import Config
from ..errors import ConfigError, KmsError
from ..keys.profile import key_profile_problems
from ..keys.registry import RegistryError
from ..keys.rotation import PlanError, rebuild
from ._key_state import (
    CommandFailed,
    add_common_options,
    apply_guard,
    describe_versions,
    file_registry,
    identity,
    read_live_key,
    run_command,
    stored_facts,
    versions_text,
)
from ._output import EXIT_ERROR, EXIT_OK, EXIT_RUNTIME


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "rebuild-state",
        help="rebuild a missing or damaged key registry from live Transit metadata",
    )
    add_common_options(parser, writes=True)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    return run_command("rebuild-state", args, lambda config: change(config, args))


def change(config: Config, args: argparse.Namespace) -> tuple[dict[str, Any], str, int]:
    registry = file_registry(config)
    try:
        stored = registry.read()
        condition = "absent"
    except RegistryError as error:
        stored, condition = None, f"{error.reason}: {error}"
    if stored is not None:
        raise CommandFailed(
            f"the key registry is valid (generation {stored.generation}): rebuild-state only "
            "replaces a missing or damaged one",
            EXIT_ERROR,
        )
    token = registry.token()
    try:
        key = read_live_key(config)
    except (KmsError, ConfigError) as error:
        message = f"cannot read the key's metadata from OpenBao: {error}"
        raise CommandFailed(message, EXIT_RUNTIME) from None
    try:
        state = rebuild(key)
    except PlanError as error:
        raise CommandFailed(str(error), EXIT_ERROR) from None
    unlisted = key.min_decryption_version - 1
    warnings = [f"{r}: {r.meaning}" for r in key_profile_problems(key, disable_upsert=True)]
    report: dict[str, Any] = {
        "current": condition,
        "state_hash": token,
        "trust": {
            "latest_version": key.latest_version,
            "min_decryption_version": key.min_decryption_version,
            "versions": describe_versions(state, identity(config)),
            "unknown_versions_below": key.min_decryption_version if unlisted else None,
        },
        "warnings": warnings,
        "applied": False,
    }
    lines = [
        f"the registry now: {condition}",
        f"state hash: {token}",
        f"rebuild would trust OpenBao's metadata as it is now (latest_version "
        f"{key.latest_version}, min_decryption_version {key.min_decryption_version}):",
        versions_text(report["trust"]["versions"]).rstrip("\n"),
    ]
    if unlisted:
        lines.append(
            f"versions 1..{unlisted} are below min_decryption_version: OpenBao does not list "
            "them, so their key_ids stay unknown (NOT_FOUND) unless it is lowered first"
        )
    lines += [f"WARNING: {warning}" for warning in warnings]
    if args.apply:
        apply_guard(args, token)
        written = registry.replace(state, token)
        report |= {"applied": True, "new_state": stored_facts(written)}
        lines.append(f"written: generation {written.generation}, hash {written.hash}")
    else:
        lines.append(f"to apply: rebuild-state --apply --expected-state-hash {token}")
    return report, "\n".join(lines) + "\n", EXIT_OK
