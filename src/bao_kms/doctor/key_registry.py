"""``doctor``'s look at the key version registry (``state.path``): there, private, intact.

Read-only: it takes no lock, so it runs beside the provider that owns the file. Without
``state.path`` the registry lives in memory; that works, but a restart forgets which key
versions the node has seen, so it is a warning.
"""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from ..keys.registry import FileRegistry, RegistryError, registry_scope
from ..keys.rotation import VersionState
from .checks import Check, Finding, Outcome


def check_key_registry(config: Config) -> Finding:
    if config.state.path is None:
        return Finding(
            Check.KEY_REGISTRY,
            Outcome.WARN,
            "persistence is off: state.path is not set, so the key version registry lives in "
            "memory and a restart forgets which key versions this node has seen",
        )
    path = Path(config.state.path)
    registry = FileRegistry(path, registry_scope(config.provider_identity()), float)
    try:
        stored = registry.read()
    except RegistryError as error:
        return Finding(Check.KEY_REGISTRY, Outcome.FAIL, f"{error.reason}: {error}")
    if stored is None:
        return Finding(
            Check.KEY_REGISTRY,
            Outcome.PASS,
            f"{path} does not exist yet: the provider creates it at its first probe if the key "
            "was never rotated (after a rotation, copy it from a healthy node or run "
            "`rebuild-state`)",
        )
    state = stored.state
    pending = state.numbers(VersionState.PENDING)
    return Finding(
        Check.KEY_REGISTRY,
        Outcome.PASS,
        f"{path}: generation {stored.generation}, active version {state.active}"
        + (f", pending {', '.join(map(str, pending))}" if pending else ""),
    )
