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
    OPENBAO_TLS_UNTRUSTED = (
        "openbao_tls_untrusted",
        "OpenBao's TLS certificate was refused: unknown CA, expired, not yet valid or another "
        "host name (the log says which)",
        "check `openbao.caFile`, `openbao.tlsServerName` and the server's certificate",
    )
    OPENBAO_REDIRECT_REFUSED = (
        "openbao_redirect_refused",
        "an address answered with a redirect, which is never followed (the token would go to "
        "an address nobody configured)",
        "list the OpenBao nodes themselves in `openbao.addresses`",
    )
    OPENBAO_SEALED = ("openbao_sealed", "OpenBao is sealed", "unseal it")
    OPENBAO_RATE_LIMITED = (
        "openbao_rate_limited",
        "OpenBao answered 429: a rate-limit quota refused the call",
        "raise the quota on the provider's paths (`sys/quotas/rate-limit`)",
    )
    OPENBAO_UNAUTHENTICATED = (
        "openbao_unauthenticated",
        "OpenBao refused the token (HTTP 401) even after a fresh login or file re-read",
        "check the auth method's set-up (`docs/openbao-setup.md`)",
    )
    AUTH_CREDENTIAL_INVALID = (
        "auth_credential_invalid",
        "no token can be had: a credential file (token, role or secret ID, JWT) is missing, "
        "unreadable, readable by other users, empty, malformed, or holds a token that expired or "
        "was revoked (the log names it)",
        "fix the file (it is re-read before each login)",
    )
    AUTH_LOGIN_REFUSED = (
        "auth_login_refused",
        "no token can be had: OpenBao refused the login (wrong role, secret ID, JWT or "
        "certificate, or no such auth mount)",
        "check the method's set-up (`docs/openbao-setup.md`)",
    )
    OPENBAO_TOKEN_REJECTED = (
        "openbao_token_rejected",
        "OpenBao refused the token itself: HTTP 403 and `auth/token/lookup-self` refused too "
        "(expired, revoked or unknown), even after a fresh login or file re-read",
        "give the provider a valid token (the token file is re-read; other methods log in again)",
    )
    OPENBAO_PERMISSION_DENIED = (
        "openbao_permission_denied",
        "the policy does not allow a call (HTTP 403 while the token itself is valid)",
        "apply the policy `bao-kms-provider policy --config FILE` prints",
    )
    OPENBAO_NOT_FOUND = (
        "openbao_not_found",
        "OpenBao has no such Transit mount or key (HTTP 404, or `encryption key not found`)",
        "check `transit.mountPath` / `keyName`; a deleted key cannot come back",
    )

    # --- a probe failed for another reason ----------------------------------------------------
    METADATA_READ_FAILED = (
        "metadata_read_failed",
        "OpenBao answered the key read, but not with usable key metadata",
        "check `transit.mountPath` / `keyName` and the provider's logs",
    )
    # a deep probe names the capability that failed, next to the cause when OpenBao gave one
    DEEP_PROBE_ENCRYPT_FAILED = (
        "deep_probe_encrypt_failed",
        "the round trip's encrypt at the active version failed (the cause is listed beside it)",
        "check the policy's `update` on `<mount>/encrypt/<key>` and the key's versions",
    )
    DEEP_PROBE_DECRYPT_FAILED = (
        "deep_probe_decrypt_failed",
        "the round trip's decrypt at the active version failed or returned other bytes",
        "check the policy's `update` on `<mount>/decrypt/<key>` and the key's versions",
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
    ENCRYPTION_BLOCKED = (
        "encryption_blocked",
        "the key's `min_encryption_version` is above the active version: Encrypt is refused, "
        "Decrypt is still served",
        "lower `min_encryption_version`, or wait until this node promotes the newer version "
        "(`rotation-plan`)",
    )
    #: the same reason under the name it first had (an alias: one word, one table row)
    KEY_ACTIVE_VERSION_BELOW_MIN_ENCRYPTION = ENCRYPTION_BLOCKED
    KEY_ACTIVE_VERSION_BELOW_MIN_DECRYPTION = (
        "key_active_version_below_min_decryption",
        "the key's `min_decryption_version` is above the version the provider encrypts with",
        "lower `min_decryption_version` at once: data written at that version is unreadable",
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

    # --- rotation and the version registry (keys/rotation.py, keys/registry.py) ---------------
    KEY_RETAINED_VERSION_BELOW_MIN_DECRYPTION = (
        "key_retained_version_below_min_decryption",
        "the key's `min_decryption_version` is above a version this node still keeps for "
        "Decrypt: data in etcd at that version cannot be read",
        "lower `min_decryption_version`; raise it only after `retire-versions` (docs/rotation.md)",
    )
    KEY_RETAINED_VERSION_TRIMMED = (
        "key_retained_version_trimmed",
        "the key's `min_available_version` is above a version this node still keeps for "
        "Decrypt: OpenBao deleted (trimmed) it",
        "restore the key from a backup taken before the trim; data at that version is lost "
        "otherwise",
    )
    KEY_VERSION_METADATA_MISSING = (
        "key_version_metadata_missing",
        "a version between `min_decryption_version` and `latest_version` is not in the key's "
        "metadata, so its key_id cannot be known",
        "inspect the key",
    )
    STATE_MISSING = (
        "state_missing",
        "the version registry (`state.path`) is missing although the key was rotated or the "
        "registry existed before: a restart must not forget versions etcd may hold",
        "copy the registry files from a healthy control-plane node, or run `rebuild-state` "
        "(docs/rotation.md)",
    )
    STATE_INVALID = (
        "state_invalid",
        "the version registry is damaged, edited by hand, older than its checkpoint or "
        "another key's (the log says which)",
        "copy the registry files from a healthy control-plane node, or run `rebuild-state` "
        "(docs/rotation.md)",
    )
    STATE_WRITE_FAILED = (
        "state_write_failed",
        "the version registry could not be written: no new version is adopted or promoted "
        "until it can",
        "check the state directory: free space, permissions, a read-only mount",
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
