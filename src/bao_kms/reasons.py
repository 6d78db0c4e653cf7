"""Status reasons: every word ``healthz`` can carry, with its meaning and remedy beside it.

kube-apiserver shows ``healthz`` verbatim and operators grep logs and metrics for these words,
so they are a vocabulary with a fixed spelling, not free text: one :class:`Reason` member each.
Being a ``StrEnum``, a member *is* its word wherever a ``str`` is expected (``",".join``, JSON
logs, metric labels). README's "Status reasons" table is rendered from :func:`markdown_table`
and a test keeps the two equal.

This module sits at the bottom of the package: it imports nothing from it.
"""

from __future__ import annotations

from enum import StrEnum


class Reason(StrEnum):
    """Why Status is not ``ok``; ``meaning`` and ``remedy`` are what the README shows."""

    meaning: str
    remedy: str

    def __new__(cls, word: str, meaning: str, remedy: str) -> Reason:
        member = str.__new__(cls, word)
        member._value_ = word
        member.meaning = meaning
        member.remedy = remedy
        return member

    # --- the probes have not finished yet -----------------------------------------------------
    NOT_PROBED_YET = (
        "not_probed_yet",
        "start-up: the first metadata probe has not finished",
        "wait a second",
    )
    DEEP_PROBE_PENDING = (
        "deep_probe_pending",
        "the active key has not yet passed an encrypt+decrypt round trip",
        "wait; it runs at once",
    )

    # --- OpenBao's state, from the error a probe got (KmsError.reason carries these) -----------
    OPENBAO_UNAVAILABLE = (
        "openbao_unavailable",
        "OpenBao unreachable: connection, TLS, timeout or 5xx",
        "check OpenBao and the network",
    )
    OPENBAO_CIRCUIT_OPEN = (
        "openbao_circuit_open",
        "failing fast after repeated failures; retried every 5 s",
        "check OpenBao and the network",
    )
    OPENBAO_SEALED = ("openbao_sealed", "OpenBao is sealed", "unseal it")
    OPENBAO_UNAUTHENTICATED = (
        "openbao_unauthenticated",
        "the token file is missing, empty or unusable",
        "fix the file (it is re-read)",
    )
    OPENBAO_PERMISSION_DENIED = (
        "openbao_permission_denied",
        "the policy does not allow a call",
        "apply `deploy/openbao-policy.hcl`",
    )

    # --- a probe failed for another reason ----------------------------------------------------
    METADATA_READ_FAILED = (
        "metadata_read_failed",
        "OpenBao answered, but not with usable key metadata (no such key or mount, bad response)",
        "check `transit.mountPath` / `keyName`",
    )
    DEEP_PROBE_FAILED = (
        "deep_probe_failed",
        "the round trip at the active version failed",
        "check OpenBao's logs",
    )
    STATUS_STALE = (
        "status_stale",
        "no successful metadata probe for `maxStaleness`",
        "check the provider's logs",
    )
    PROBE_FAILED = ("probe_failed", "a bug in the probes (logged with its stack)", "report it")

    # --- the key departs from the safe profile (DESIGN §4) -------------------------------------
    # type, derivation, convergence, exportable and plaintext backup are fixed once set: the
    # only way back to the safe profile is a new key.
    KEY_TYPE_UNSUPPORTED = (
        "key_type_unsupported",
        "the Transit key's type is not `aes256-gcm96`",
        "use a new `aes256-gcm96` key",
    )
    KEY_DERIVED = (
        "key_derived",
        "the Transit key uses key derivation",
        "use a new key without derivation",
    )
    KEY_CONVERGENT = (
        "key_convergent",
        "the Transit key uses convergent encryption",
        "use a new key without convergent encryption",
    )
    KEY_EXPORTABLE = (
        "key_exportable",
        "the Transit key can be exported",
        "use a new key (`exportable` cannot be turned off)",
    )
    KEY_PLAINTEXT_BACKUP_ALLOWED = (
        "key_plaintext_backup_allowed",
        "the Transit key can be backed up in plaintext",
        "use a new key (`allow_plaintext_backup` cannot be turned off)",
    )
    KEY_DELETION_ALLOWED = (
        "key_deletion_allowed",
        "the Transit key can be deleted",
        "set `deletion_allowed=false` in the key's config",
    )
    KEY_SOFT_DELETED = (
        "key_soft_deleted",
        "the Transit key is soft-deleted",
        "restore the key from soft deletion",
    )
    KEY_LATEST_VERSION_MISSING = (
        "key_latest_version_missing",
        "the key lists no version at its `latest_version`",
        "inspect the key",
    )
    KEY_MIN_DECRYPTION_VERSION_ABOVE_LATEST = (
        "key_min_decryption_version_above_latest",
        "the key's `min_decryption_version` is above its `latest_version`",
        "inspect the key",
    )
    KEY_MIN_ENCRYPTION_VERSION_ABOVE_LATEST = (
        "key_min_encryption_version_above_latest",
        "the key's `min_encryption_version` is above its `latest_version`",
        "inspect the key",
    )
    MOUNT_UPSERT_ENABLED = (
        "mount_upsert_enabled",
        "the mount's `config/keys` allows creating keys on first use",
        "set `disable_upsert=true`",
    )

    # --- the key's history was rewritten ------------------------------------------------------
    KEY_LINEAGE_LATEST_VERSION_DECREASED = (
        "key_lineage_latest_version_decreased",
        "the key's `latest_version` went down: it was re-created or restored from an older "
        "backup, and old key_ids must not point at new key material",
        "restore the original key; never re-create it",
    )
    KEY_LINEAGE_VERSION_CREATED_CHANGED = (
        "key_lineage_version_created_changed",
        "a version's creation time changed: the key was deleted and re-created under the same "
        "name, and old key_ids must not point at new key material",
        "restore the original key; never re-create it",
    )

    # --- nothing failed, yet there is nothing to encrypt with ---------------------------------
    NO_ACTIVE_KEY = (
        "no_active_key",
        "metadata read, but no usable active version",
        "inspect the key",
    )


#: reasons that only mean "the first probes have not finished yet" (logged as info)
STARTING: frozenset[Reason] = frozenset({Reason.NOT_PROBED_YET, Reason.DEEP_PROBE_PENDING})

#: the key's history was rewritten: while one stands, no version is adopted from OpenBao
KEY_LINEAGE: frozenset[Reason] = frozenset(
    {Reason.KEY_LINEAGE_LATEST_VERSION_DECREASED, Reason.KEY_LINEAGE_VERSION_CREATED_CHANGED}
)


def markdown_table() -> str:
    """README's "Status reasons" table, one row per member in definition order."""
    rows = ["| reason | meaning | what to do |", "|---|---|---|"]
    rows += [f"| `{reason}` | {reason.meaning} | {reason.remedy} |" for reason in Reason]
    return "\n".join(rows) + "\n"
