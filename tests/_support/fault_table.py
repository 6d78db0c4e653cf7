"""The fault matrix as data: for each fault, what kube-apiserver must see while it lasts.

One :class:`Expectation` per fault holds the Status reasons, the gRPC codes of Encrypt and of
Decrypt of an object written before the fault, and what clears it. The tests in tests/faults/
assert against these rows, and docs/fault-matrix.md is :func:`markdown_table` of them plus the
times a real run measured; tests/faults/test_fault_doc.py keeps the two equal, so the document
cannot promise what the tests do not check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from grpc import StatusCode as Code


@dataclass(frozen=True)
class Expectation:
    """One row: a fault and the answers it must produce."""

    name: str
    #: what is done to OpenBao, the key, the token or the files
    fault: str
    #: what ends it (and from which moment recovery is timed)
    cleared_by: str
    #: reasons Status must name while it lasts (others may join them); () : Status stays ok
    reasons: tuple[str, ...]
    #: the gRPC code(s) Encrypt answers while it lasts
    encrypt: tuple[Code, ...]
    #: the gRPC code(s) Decrypt of an object written before the fault answers meanwhile
    decrypt: tuple[Code, ...]
    #: what becomes of the objects written before it, once it is cleared
    afterwards: str = "all read back"

    @property
    def ready(self) -> str:
        return "503, the same reasons" if self.reasons else "200"


def _codes(*codes: Code) -> tuple[Code, ...]:
    return codes


UNAVAILABLE = _codes(Code.UNAVAILABLE)
REFUSED = _codes(Code.FAILED_PRECONDITION)
SERVED = _codes(Code.OK)

FAULTS: Mapping[str, Expectation] = {
    row.name: row
    for row in (
        Expectation(
            "openbao_stopped",
            "OpenBao stopped (SIGTERM)",
            "started again on the same storage",
            ("openbao_unavailable",),
            REFUSED,
            UNAVAILABLE,
        ),
        Expectation(
            "openbao_sealed",
            "OpenBao sealed",
            "unsealed",
            ("openbao_sealed",),
            REFUSED,
            UNAVAILABLE,
        ),
        Expectation(
            "openbao_frozen",
            "OpenBao frozen (SIGSTOP): connections accepted, nothing answered",
            "SIGCONT",
            ("openbao_unavailable",),
            REFUSED,
            UNAVAILABLE,
        ),
        Expectation(
            "raft_active_killed",
            "the active node of a 3-node raft cluster SIGKILLed under load",
            "a standby is elected (nothing is restarted)",
            (),
            SERVED,
            SERVED,
            "all read back; no Decrypt failed under load",
        ),
        Expectation(
            "token_revoked",
            "the provider's token revoked",
            "a new token written to the token file",
            ("auth_credential_invalid",),
            REFUSED,
            _codes(Code.UNAUTHENTICATED),
        ),
        Expectation(
            "policy_narrowed",
            "the token's policy loses `decrypt`",
            "the policy restored",
            ("openbao_permission_denied", "deep_probe_decrypt_failed"),
            REFUSED,
            _codes(Code.PERMISSION_DENIED),
        ),
        Expectation(
            "token_max_ttl",
            "the token reaches its max TTL (renewal can no longer extend it)",
            "a new token written to the token file",
            ("auth_credential_invalid",),
            REFUSED,
            _codes(Code.UNAUTHENTICATED),
        ),
        Expectation(
            "token_renewal_denied",
            "the token's policy lacks `renew-self` (no default policy): renewal refused, "
            "then the token expires",
            "a new token written to the token file",
            ("auth_credential_invalid",),
            REFUSED,
            _codes(Code.UNAUTHENTICATED),
        ),
        Expectation(
            "credentials_replaced",
            "the token file replaced under load and the old token revoked",
            "(nothing to clear)",
            (),
            SERVED,
            SERVED,
            "all read back; no call failed under load",
        ),
        Expectation(
            "key_deleted_recreated",
            "the Transit key deleted (`deletion_allowed` set for it) and re-created under "
            "the same name",
            "nothing: only the original key can be restored",
            ("key_lineage_version_created_changed",),
            REFUSED,
            # the old key_id still names the old version: Transit's AES-GCM check refuses it
            _codes(Code.INVALID_ARGUMENT),
            "none readable (the key material is gone); refused, never wrong plaintext",
        ),
        Expectation(
            "key_soft_deleted",
            "the Transit key soft-deleted",
            "`soft-delete-restore`",
            ("key_soft_deleted",),
            REFUSED,
            REFUSED,  # Transit itself refuses a soft-deleted key
        ),
        Expectation(
            "upsert_enabled",
            "the mount's `disable_upsert` turned off",
            "turned on again",
            ("mount_upsert_enabled",),
            REFUSED,
            SERVED,
        ),
        Expectation(
            "state_lost",
            "the version registry file (`state.path`) deleted while running",
            "`rebuild-state --apply`",
            ("state_missing",),
            REFUSED,
            SERVED,
        ),
        Expectation(
            "state_edited",
            "the version registry file edited by hand",
            "the file put back from a copy",
            ("state_invalid",),
            REFUSED,
            SERVED,
        ),
    )
}

HEADER = (
    "| fault | cleared by | Status `healthz` | Encrypt | Decrypt (old object) | `/ready` "
    "| objects written before | detected | recovered |",
    "|---|---|---|---|---|---|---|---|---|",
)


def code_words(codes: tuple[Code, ...]) -> str:
    return " or ".join(f"`{code.name}`" for code in codes)


def row_cells(expectation: Expectation) -> list[str]:
    """The checked cells of a row: everything but the measured times."""
    reasons = ", ".join(f"`{reason}`" for reason in expectation.reasons) or "`ok`"
    return [
        expectation.fault,
        expectation.cleared_by,
        reasons,
        code_words(expectation.encrypt),
        code_words(expectation.decrypt),
        expectation.ready,
        expectation.afterwards,
    ]


def seconds_cell(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} s"


def markdown_table(times: Mapping[str, tuple[float | None, float | None]]) -> str:
    """The document's table; *times* maps a fault's name to its measured (detected,
    recovered) seconds; a fault the run did not measure gets empty cells."""
    rows = list(HEADER)
    for name, expectation in FAULTS.items():
        measured = [seconds_cell(value) for value in times[name]] if name in times else ["", ""]
        rows.append("| " + " | ".join([*row_cells(expectation), *measured]) + " |")
    return "\n".join(rows) + "\n"


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of each row of the fault table in *markdown* (header and rule excluded)."""
    lines = markdown.splitlines()
    start = lines.index(HEADER[0]) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("| "):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows
