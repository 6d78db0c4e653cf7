"""The vocabulary of ``doctor``: each check's name, what it verifies, and the usual fix.

Operators read these names in ``doctor`` output, scripts match them in ``--output json`` and
``docs/troubleshooting.md`` has a row per check rendered by :func:`markdown_table` (a test keeps
them equal), so they are an enum with a fixed spelling, like :class:`bao_kms.reasons.Reason`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Outcome(StrEnum):
    """How one check came out; any ``fail`` makes ``doctor`` exit 4."""

    PASS = "pass"
    WARN = "warn"
    FAIL = "fail"


class Check(StrEnum):
    """A named check; ``verifies`` and ``hint`` are what the troubleshooting table shows."""

    verifies: str
    hint: str

    def __new__(cls, word: str, verifies: str, hint: str) -> Check:
        member = str.__new__(cls, word)
        member._value_ = word
        member.verifies = verifies
        member.hint = hint
        return member

    CONFIG = (
        "config",
        "the config file reads and validates",
        "fix the field it names; `bao-kms-provider config schema` lists every key",
    )
    FILES = (
        "files",
        "the config file and every file it names exist and are readable; credentials are "
        "private to their owner, no file is writable by others",
        "create the file; `chmod 0600` credentials and `chown` them to the provider's user; "
        "`chmod go-w` the rest",
    )
    SOCKET = (
        "socket",
        "the socket path fits a Unix socket address; its directory is no symlink, not "
        "world-writable, owned by root or the provider; the socket group exists",
        "use a short path in a directory only the provider can write, e.g. "
        "`/run/openbao-kms/kms.sock` (the tmpfiles snippet creates it)",
    )
    KEY_REGISTRY = (
        "key_registry",
        "the key version registry (`state.path`) is set, private to the provider's user and "
        "intact (hash, checkpoint, key); warns when persistence is off",
        "set `state.path` (`init` does); for a damaged or missing registry see docs/rotation.md "
        "(copy it from a healthy node, or `rebuild-state`)",
    )
    OPENBAO_REACHABLE = (
        "openbao_reachable",
        "every configured address answers `sys/health` over the configured TLS, initialised "
        "and unsealed",
        "check the address, the network, and that `openbao.caFile` holds the CA that signed "
        "OpenBao's certificate",
    )
    AUTH = (
        "auth",
        "the configured auth method yields a token OpenBao accepts (`auth/token/lookup-self`)",
        "renew or re-issue the credential (`openbao-setup.sh` shows how); keep the `default` "
        "policy on the token",
    )
    TOKEN_CAPABILITIES = (
        "token_capabilities",
        "the token may encrypt and decrypt with the key and read it and the mount's "
        "`config/keys`; warns on a root token and on anything more (delete, export, rotate, "
        "sudo, other keys)",
        "use a token with only the policy from `bao-kms-provider policy --config FILE` "
        "(plus `default`)",
    )
    KEY_PROFILE = (
        "key_profile",
        "the Transit key is in the safe profile and the mount has `disable_upsert=true`",
        "fix each Status reason the message names (docs/troubleshooting.md, by Status reason)",
    )
    ROUND_TRIP = (
        "round_trip",
        "a provider started in-process on a temporary socket reports Status ok and completes "
        "Encrypt and Decrypt with the key_id Status reports",
        "look up the Status reasons or gRPC error in the message (docs/troubleshooting.md)",
    )
    ENCRYPTION_CONFIG = (
        "encryption_config",
        "the EncryptionConfiguration has a kms v2 provider named as `identity.providerName` "
        "at `unix://` + `server.socketPath`; warns while an `identity` provider comes first "
        "or remains",
        "follow docs/enable-encryption.md: phase files from `bao-kms-provider init`",
    )


@dataclass(frozen=True)
class Finding:
    """The outcome of one check, with a message and a hint that never carry a secret."""

    check: Check
    outcome: Outcome
    message: str
    #: the fix for this finding; the check's general hint when empty
    hint: str = field(default="")

    def as_dict(self) -> dict[str, str]:
        hint = "" if self.outcome is Outcome.PASS else (self.hint or self.check.hint)
        return {
            "name": self.check.value,
            "status": self.outcome.value,
            "message": self.message,
            "hint": hint,
        }


@dataclass
class Report:
    """Every finding of one ``doctor`` run, in the order the checks ran."""

    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(finding.outcome is not Outcome.FAIL for finding in self.findings)

    def add(self, finding: Finding) -> Finding:
        self.findings.append(finding)
        return finding

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [finding.as_dict() for finding in self.findings]}


def markdown_table() -> str:
    """The troubleshooting doc's table of checks, one row per :class:`Check`."""
    rows = ["| check | verifies | usual fix |", "|---|---|---|"]
    rows += [f"| `{check.value}` | {check.verifies} | {check.hint} |" for check in Check]
    return "\n".join(rows) + "\n"
