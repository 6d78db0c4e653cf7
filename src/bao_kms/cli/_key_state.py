"""What the rotation commands share: the node's registry and live key, and the apply guard.

``rotation-plan`` only reads. ``retire-versions``, ``restore-versions`` and ``rebuild-state``
print a plan by default and write only with ``--apply --expected-state-hash H``, where H is the
state hash the plan showed: a plan made against a state that changed since (a rotation, another
operator) is refused instead of applied to something nobody looked at.

A running provider holds the registry's owner lock but not its write lock, so these commands
work beside it (``kubectl exec`` into the static pod, or on the host); the provider reads the
new state at its next metadata probe.
"""

from __future__ import annotations

import argparse
import datetime
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ENV_CONFIG, Config, load_config
from ..errors import ConfigError, KmsError
from ..identity import Identity
from ..keys.registry import FileRegistry, RegistryError, StoredState, registry_scope
from ..keys.rotation import KeyState, PlanError
from ..logs import short_hash
from ..openbao.key_metadata import KeyMetadata
from ._output import (
    EXIT_CHECK_FAILED,
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    add_output_option,
    emit,
    fail,
)


class CommandFailed(Exception):
    """An expected failure: print the message, exit with ``code``."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def add_common_options(parser: argparse.ArgumentParser, *, writes: bool) -> None:
    parser.add_argument("--config", help=f"config file (default: ${ENV_CONFIG})")
    if writes:
        parser.add_argument(
            "--apply", action="store_true", help="write the plan (default: only show it)"
        )
        parser.add_argument(
            "--expected-state-hash",
            metavar="H",
            help="with --apply: the state hash the plan showed; a changed state is refused",
        )
    add_output_option(parser)


def load(args: argparse.Namespace) -> Config:
    path = args.config or os.environ.get(ENV_CONFIG)
    if not path:
        raise CommandFailed(f"--config FILE (or {ENV_CONFIG}) is required", EXIT_USAGE)
    if getattr(args, "apply", False) and not args.expected_state_hash:
        raise CommandFailed("--apply needs --expected-state-hash (from the plan)", EXIT_USAGE)
    return load_config(path)


def file_registry(config: Config) -> FileRegistry:
    if config.state.path is None:
        raise CommandFailed(
            "state.path is not set: the key registry lives in the provider's memory "
            "(persistence is off) and there is no file to change",
            EXIT_USAGE,
        )
    return FileRegistry(Path(config.state.path), registry_scope(identity(config)), time.time)


def identity(config: Config) -> Identity:
    return config.provider_identity()


def read_live_key(config: Config) -> KeyMetadata:
    """The Transit key's metadata, read with the provider's own client and credentials."""
    from ..provider import Provider  # grpc and the OpenBao client: only commands that use them

    provider = Provider(config)  # built, never started: no socket, no lock, no probes
    try:
        provider.auth.start(provider.transport)
        return provider.probe_transit.read_key()
    finally:
        provider.auth.stop()
        provider.pool.clear()


def describe_versions(state: KeyState, who: Identity) -> list[dict[str, Any]]:
    """One row per version: number, state, creation time, key_id hash (never the key_id)."""
    return [
        {
            "version": version,
            "state": record.state.value,
            "created": utc(record.created),
            "key_id_hash": short_hash(who.key_version(version, record.created).key_id),
        }
        for version, record in state.versions.items()
    ]


def versions_text(rows: list[dict[str, Any]]) -> str:
    return "".join(
        f"  v{row['version']:<4} {row['state']:<9} created {row['created']}  "
        f"key_id hash {row['key_id_hash']}\n"
        for row in rows
    )


def utc(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def stored_facts(stored: StoredState) -> dict[str, Any]:
    return {"generation": stored.generation, "hash": stored.hash, "updated": stored.updated_at}


def apply_guard(args: argparse.Namespace, current_hash: str) -> None:
    """Refuse ``--apply`` when the state is no longer the one the plan was made against."""
    if args.expected_state_hash != current_hash:
        raise CommandFailed(
            f"the key registry changed since the plan (its hash is now {current_hash}): "
            "show the plan again and check it",
            EXIT_CHECK_FAILED,
        )


def run_command(command: str, args: argparse.Namespace, body: Any) -> int:
    """Run *body(config)*, which returns (report, text, exit code); print either form."""
    try:
        config = load(args)
        report, text, code = body(config)
    except CommandFailed as error:
        fail(command, error)
        return error.code
    except RegistryError as error:
        fail(command, error)
        return EXIT_CHECK_FAILED
    emit(report, args.output, text)
    return int(code)


def live_key_or_problem(config: Config) -> tuple[KeyMetadata | None, str]:
    try:
        return read_live_key(config), ""
    except (KmsError, ConfigError) as error:
        return None, f"cannot read the key's metadata from OpenBao: {error}"


def plan_version_change(
    config: Config,
    args: argparse.Namespace,
    *,
    command: str,
    change: Callable[[KeyState], tuple[KeyState, list[int]]],
    report_key: str,
    nothing: str,
    plan: Callable[[list[int]], str],
    after: Callable[[list[int]], str] | None = None,
) -> tuple[dict[str, Any], str, int]:
    """The one flow of ``retire-versions`` and ``restore-versions``: read the registry, plan
    *change* on its state, and write it only with ``--apply`` and the hash the plan showed.

    *command* is the command line that applies the plan (its options, without ``--apply``);
    *plan* and *after* word the plan and the step after a write for the chosen versions.
    """
    registry = file_registry(config)
    stored = registry.read()
    if stored is None:
        raise CommandFailed("there is no key registry yet: nothing to change", EXIT_ERROR)
    try:
        new_state, chosen = change(stored.state)
    except PlanError as error:
        raise CommandFailed(str(error), EXIT_ERROR) from None
    report: dict[str, Any] = {"state": stored_facts(stored), report_key: chosen, "applied": False}
    lines = [f"state hash: {stored.hash} (generation {stored.generation})"]
    lines.append(plan(chosen) if chosen else nothing)
    if chosen and args.apply:
        apply_guard(args, stored.hash)
        written = registry.save(new_state, stored)
        report |= {"applied": True, "new_state": stored_facts(written)}
        lines.append(f"written: generation {written.generation}, hash {written.hash}")
        if after is not None:
            lines.append(after(chosen))
    elif chosen:
        config_option = f" --config {args.config}" if args.config else ""
        lines.append(
            f"to apply: {command}{config_option} --apply --expected-state-hash {stored.hash}"
        )
    report["versions"] = describe_versions(new_state, identity(config))
    lines.append("versions after:\n" + versions_text(report["versions"]).rstrip("\n"))
    return report, "\n".join(lines) + "\n", EXIT_OK
