"""Judging a token's capabilities (``sys/capabilities-self``) against what the provider needs.

Pure: it gets the capabilities OpenBao reported per path and returns a finding. The paths
asked about are the needed ones (:func:`bao_kms.manifests.needed_capabilities`) plus the ones
whose grant would let a stolen provider token do damage: delete, export, back up, rotate or
reconfigure the key, turn upsert back on, or use another key of the mount.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..manifests import needed_capabilities
from .checks import Check, Finding, Outcome

#: a name no real key has, to detect policies that grant the whole mount (``transit/*``)
OTHER_KEY = "bao-kms-doctor-no-such-key"


def risky_paths(mount_path: str, key_name: str) -> dict[str, str]:
    """Path -> what a grant there would allow, in words free of mount and key names."""
    mount = mount_path.strip("/")
    return {
        f"{mount}/keys/{key_name}/config": "reconfiguring the key (e.g. deletion_allowed)",
        f"{mount}/keys/{key_name}/rotate": "rotating the key",
        f"{mount}/export/encryption-key/{key_name}": "exporting the key",
        f"{mount}/backup/{key_name}": "backing up the key",
        f"{mount}/keys/{OTHER_KEY}": "other keys of the mount",
        f"{mount}/encrypt/{OTHER_KEY}": "encrypting with other keys of the mount",
        f"{mount}/decrypt/{OTHER_KEY}": "decrypting with other keys of the mount",
    }


def paths_to_ask(mount_path: str, key_name: str) -> list[str]:
    return [
        *needed_capabilities(mount_path, key_name),
        *risky_paths(mount_path, key_name),
    ]


def _role(path: str, mount_path: str, key_name: str) -> str:
    """How a message names a needed path: by its role, never by mount or key name."""
    mount = mount_path.strip("/")
    roles = {
        f"{mount}/encrypt/{key_name}": "encrypt",
        f"{mount}/decrypt/{key_name}": "decrypt",
        f"{mount}/keys/{key_name}": "the key",
        f"{mount}/config/keys": "the mount's config/keys",
    }
    return roles.get(path, path)


def assess(granted: Mapping[str, Sequence[str]], mount_path: str, key_name: str) -> Finding:
    """The finding for capabilities *granted* (path -> capability list, as OpenBao answers)."""

    def caps(path: str) -> set[str]:
        return set(granted.get(path, ())) - {"deny"}

    if any("root" in caps(path) for path in granted):
        return Finding(
            Check.TOKEN_CAPABILITIES,
            Outcome.WARN,
            "this is a root token: it can do anything, including deleting the key",
            "create a token with only the provider's policy (`bao-kms-provider policy`)",
        )
    missing, extra = [], []
    for path, needed in needed_capabilities(mount_path, key_name).items():
        have = caps(path)
        role = _role(path, mount_path, key_name)
        lacking = sorted(set(needed) - have)
        if lacking:
            missing.append(f"{'/'.join(lacking)} on {role}")
        more = sorted(have - set(needed))
        if more:
            extra.append(f"{'/'.join(more)} on {role}")
    for path, what in risky_paths(mount_path, key_name).items():
        if caps(path):
            extra.append(what)
    sudo = sorted(_role(path, mount_path, key_name) for path in granted if "sudo" in caps(path))
    if sudo:
        extra.append(f"sudo on {', '.join(sudo)}")
    if missing:
        return Finding(
            Check.TOKEN_CAPABILITIES,
            Outcome.FAIL,
            "the token lacks " + "; ".join(missing),
            "apply the policy from `bao-kms-provider policy --config FILE` to the token",
        )
    if extra:
        message = f"the token may do more than needed: {', '.join(extra)}"
        return Finding(Check.TOKEN_CAPABILITIES, Outcome.WARN, message)
    return Finding(
        Check.TOKEN_CAPABILITIES, Outcome.PASS, "the token has exactly the capabilities needed"
    )
