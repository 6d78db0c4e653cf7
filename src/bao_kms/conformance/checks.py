"""The kube-apiserver KMS v2 contract as named checks, and the rules kube-apiserver applies.

Every rule the conformance run judges is one :class:`Check` member: its name is what a report
line starts with, ``rule`` says what must hold, ``consequence`` what kube-apiserver does when
it does not. ``docs/conformance.md`` shows :func:`markdown_table` and a test keeps the two
equal. The validators below are kube-apiserver's own, ported from ``k8s.io/apiserver``'s
``kmsv2`` envelope code: ``ValidateKeyID``, ``validateEncryptedObject`` and
``validateAnnotations``, plus the Status probe's healthz and version rules.

This module does no I/O; it imports nothing from the rest of the package.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from enum import StrEnum

#: the only version a v2 plugin may report; kube-apiserver pins it after the first answer
KMS_API_VERSION = "v2"
HEALTHZ_OK = "ok"
KEY_ID_MAX_BYTES = 1024
CIPHERTEXT_MAX_BYTES = 1024  # kube-apiserver's encryptedDEKSourceMaxSize
ANNOTATIONS_MAX_BYTES = 32 * 1024
DNS_NAME_MAX_CHARS = 253
#: kube-apiserver's targets from the KMS v2 documentation, in seconds
ENCRYPT_LATENCY_TARGET = 0.100
DECRYPT_LATENCY_TARGET = 0.010

# one RFC 1123 label: lowercase alphanumerics and '-', alphanumeric at both ends, <= 63 chars
_DNS_LABEL = re.compile(r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?")


class Check(StrEnum):
    """One contract rule; the value is the name a report line carries."""

    rule: str
    consequence: str
    #: a latency target: a miss is a warning unless the run is strict about latency
    soft: bool

    def __new__(cls, name: str, rule: str, consequence: str, soft: bool = False) -> Check:
        member = str.__new__(cls, name)
        member._value_ = name
        member.rule = rule
        member.consequence = consequence
        member.soft = soft
        return member

    # --- Status -------------------------------------------------------------------------------
    STATUS_REACHABLE = (
        "status-reachable",
        "Status answers on the socket within the call timeout (one attempt, no retries)",
        "the plugin is unhealthy: no new DEK seed, writes fail after 3 minutes",
    )
    STATUS_VERSION = (
        "status-version",
        'version is exactly "v2" and never changes after the first answer',
        "the probe fails: the plugin is unhealthy",
    )
    STATUS_HEALTHZ = (
        "status-healthz",
        'healthz becomes exactly "ok" within the ready timeout',
        "the probe fails: the plugin is unhealthy and no DEK seed is encrypted",
    )
    STATUS_KEY_ID = (
        "status-key-id",
        "a healthy Status carries a key_id of 1 to 1024 bytes",
        "the probe fails: the plugin is unhealthy",
    )
    KEY_ID_STABLE = (
        "key-id-stable",
        "the Status key_id never returns to a key_id it has left (no flip-flop, no reuse)",
        "every change re-encrypts a seed and marks stored objects stale; a reused key_id "
        "points old data at other key material",
    )
    # --- Encrypt ------------------------------------------------------------------------------
    ENCRYPT_SUCCEEDS = (
        "encrypt-succeeds",
        'Encrypt of a 32-byte DEK seed succeeds while Status says "ok"',
        "no DEK seed: writes fail",
    )
    ENCRYPT_KEY_ID = (
        "encrypt-key-id",
        "Encrypt returns the key_id the Status just before it reported",
        "the result is discarded and the plugin marked unhealthy",
    )
    ENCRYPT_CIPHERTEXT_SIZE = (
        "encrypt-ciphertext-size",
        "the Encrypt ciphertext is 1 to 1024 bytes",
        "the result is discarded: no DEK seed, writes fail",
    )
    ENCRYPT_ANNOTATION_KEYS = (
        "encrypt-annotation-keys",
        "annotation keys are lowercase RFC 1123 DNS names (FQDNs) with at least two labels",
        "the result is discarded: no DEK seed, writes fail",
    )
    ENCRYPT_ANNOTATION_SIZE = (
        "encrypt-annotation-size",
        "annotation keys and values total at most 32 KiB",
        "the result is discarded: no DEK seed, writes fail",
    )
    # --- Decrypt ------------------------------------------------------------------------------
    DECRYPT_ROUND_TRIP = (
        "decrypt-round-trip",
        "Decrypt of a stored seed (its ciphertext, key_id and annotations) returns exactly "
        "the bytes encrypted",
        "objects written with that seed cannot be read (AES-GCM refuses the derived key)",
    )
    DECRYPT_REFUSES_TAMPERED_CIPHERTEXT = (
        "decrypt-refuses-tampered-ciphertext",
        "a ciphertext with one byte flipped is refused with a non-OK code",
        "corrupted or forged etcd data may unwrap to another seed",
    )
    DECRYPT_REFUSES_ALTERED_ANNOTATIONS = (
        "decrypt-refuses-altered-annotations",
        "altered annotations never yield other plaintext, and the plugin binds at least one "
        "of them to the ciphertext (refuses it altered)",
        "annotations edited in etcd go unnoticed",
    )
    DECRYPT_REFUSES_MALFORMED_KEY_ID = (
        "decrypt-refuses-malformed-key-id",
        "an empty, oversized or garbled key_id is refused with a non-OK code",
        "the plugin acts on a key_id it does not understand",
    )
    DECRYPT_REFUSES_OTHER_KEY_ID = (
        "decrypt-refuses-other-key-id",
        "a well-formed key_id other than the one a ciphertext was made with is refused",
        "the plugin does not check the key_id before unwrapping",
    )
    COLD_START_BURST = (
        "cold-start-burst",
        "after a restart (caches dropped) a concurrent burst of reads, with concurrent "
        "duplicate Decrypts, is served and every object reads back exactly",
        "kube-apiserver start-up fails or stalls while it rebuilds its caches",
    )
    ROTATION = (
        "rotation",
        "after a key_id change a new seed is encrypted under the new key_id, objects under the "
        "old key_id still decrypt, read as stale and migrate to the new key_id",
        "data written before a rotation is lost, or never leaves the old key",
    )
    # --- latency (kube-apiserver's documented targets) ------------------------------------------
    ENCRYPT_LATENCY = (
        "encrypt-latency",
        "p99 of serial Encrypt calls is under 100 ms",
        "start-up and key_id changes wait on the plugin (a warning unless strict)",
        True,
    )
    DECRYPT_LATENCY = (
        "decrypt-latency",
        "p99 of serial Decrypt calls is under 10 ms",
        "cold starts and cache misses are slow (a warning unless strict)",
        True,
    )


#: the rules an Encrypt response is validated against (besides succeeding at all)
ENCRYPT_RESPONSE_RULES = (
    Check.ENCRYPT_KEY_ID,
    Check.ENCRYPT_CIPHERTEXT_SIZE,
    Check.ENCRYPT_ANNOTATION_KEYS,
    Check.ENCRYPT_ANNOTATION_SIZE,
)


def markdown_table() -> str:
    """docs/conformance.md's table of checks, one row per member in definition order."""
    rows = ["| check | rule | when broken, for kube-apiserver |", "|---|---|---|"]
    rows += [f"| `{check}` | {check.rule} | {check.consequence} |" for check in Check]
    return "\n".join(rows) + "\n"


# --- kube-apiserver's validators ------------------------------------------------------------
#: (check, problem); a problem names sizes and rules, never a ciphertext or a value
Problem = tuple[Check, str]


def key_id_problem(key_id: str) -> str | None:
    """``ValidateKeyID``: 1..1024 bytes."""
    size = len(key_id.encode())
    if size == 0:
        return "key_id is empty"
    if size > KEY_ID_MAX_BYTES:
        return f"key_id is {size} bytes (limit {KEY_ID_MAX_BYTES})"
    return None


def annotation_key_problem(key: str) -> str | None:
    """Why *key* is not a lowercase RFC 1123 DNS name with >= 2 labels (None: it is)."""
    if len(key) > DNS_NAME_MAX_CHARS:
        return f"annotation key of {len(key)} characters (limit {DNS_NAME_MAX_CHARS})"
    labels = key.split(".")
    if not all(_DNS_LABEL.fullmatch(label) for label in labels):
        return f"annotation key {shown(key)} is not a lowercase RFC 1123 DNS name"
    if len(labels) < 2:
        return f"annotation key {shown(key)} has one label (an FQDN needs at least two)"
    return None


def status_problems(version: str, healthz: str, key_id: str, pinned: str | None) -> list[Problem]:
    """What kube-apiserver's Status probe refuses in one answer (healthz is judged apart)."""
    problems: list[Problem] = []
    if version != KMS_API_VERSION:
        problems.append((Check.STATUS_VERSION, f"version {shown(version)} is not {'v2'!r}"))
    elif pinned is not None and version != pinned:
        problems.append((Check.STATUS_VERSION, "version changed after it was pinned"))
    if healthz == HEALTHZ_OK and (problem := key_id_problem(key_id)):
        problems.append((Check.STATUS_KEY_ID, problem))
    return problems


def encrypt_problems(
    ciphertext: bytes, key_id: str, annotations: Mapping[str, bytes], status_key_id: str
) -> list[Problem]:
    """``validateEncryptedObject`` on an Encrypt response, and its key_id against Status's."""
    problems: list[Problem] = []
    if key_id != status_key_id:
        problems.append(
            (Check.ENCRYPT_KEY_ID, "Encrypt returned another key_id than Status reported")
        )
    if not 0 < len(ciphertext) <= CIPHERTEXT_MAX_BYTES:
        problems.append(
            (
                Check.ENCRYPT_CIPHERTEXT_SIZE,
                f"ciphertext is {len(ciphertext)} bytes (allowed 1..{CIPHERTEXT_MAX_BYTES})",
            )
        )
    for key in sorted(annotations):
        if problem := annotation_key_problem(key):
            problems.append((Check.ENCRYPT_ANNOTATION_KEYS, problem))
    total = sum(len(key.encode()) + len(value) for key, value in annotations.items())
    if total > ANNOTATIONS_MAX_BYTES:
        problems.append(
            (
                Check.ENCRYPT_ANNOTATION_SIZE,
                f"annotations total {total} bytes (limit {ANNOTATIONS_MAX_BYTES})",
            )
        )
    return problems


def shown(text: str, limit: int = 64) -> str:
    """*text* quoted for a report line, cut short: plugin-chosen names can be long."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
