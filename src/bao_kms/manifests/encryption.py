"""kube-apiserver EncryptionConfiguration for this provider, one file per migration phase.

Encryption at rest applies on write, and every apiserver must be able to *read* what any other
writes. So an existing cluster moves in three phases, each rolled out to every control-plane
node before the next (docs/enable-encryption.md):

* ``read``: identity first, kms second. Nothing is encrypted yet, but every apiserver can
  already read kms data; this is also the file to roll back to, since it reads both.
* ``write``: kms first, identity last. New writes are encrypted; old plaintext still reads.
  Then every object is rewritten.
* ``final``: kms only. A dropped kms entry can no longer silently fall back to plaintext.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from ._yaml import scalar

#: what kube-apiserver waits for each KMS call (it never retries)
DEFAULT_TIMEOUT = "3s"


class Phase(StrEnum):
    """A migration phase; ``comment`` is the file's header."""

    comment: str
    order: int

    def __new__(cls, word: str, order: int, comment: str) -> Phase:
        member = str.__new__(cls, word)
        member._value_ = word
        member.order = order
        member.comment = comment
        return member

    READ = (
        "read",
        1,
        "Phase 1 (read): identity first, kms second. Writes stay plaintext; every apiserver\n"
        "can already read data encrypted by this provider. Roll it out to EVERY control-plane\n"
        "node before phase 2. Rolling back from any later phase: return to this file, rewrite\n"
        "every object (they are then written in plaintext), and only then remove the kms entry.",
    )
    WRITE = (
        "write",
        2,
        "Phase 2 (write): kms first, identity last. New writes are encrypted; plaintext objects\n"
        "still read. After every node runs this file, rewrite every object:\n"
        "  kubectl get secrets --all-namespaces -o json | kubectl replace -f -\n"
        "Roll back: phase 1 file (never drop the kms entry while anything is encrypted with it).",
    )
    FINAL = (
        "final",
        3,
        "Phase 3 (final): kms only, after the rewrite. A missing kms entry can no longer fall\n"
        "back to writing plaintext. Roll back: phase 2 file. NEVER remove the kms entry while\n"
        "data is encrypted with it: those objects would become unreadable.",
    )

    @property
    def filename(self) -> str:
        return f"encryption-config-{self.order}-{self.value}.yaml"


def encryption_configuration(
    provider_name: str,
    socket_path: str,
    timeout: str = DEFAULT_TIMEOUT,
    *,
    phase: Phase = Phase.WRITE,
    resources: Sequence[str] = ("secrets",),
) -> str:
    """The EncryptionConfiguration of *phase* for a provider named *provider_name*.

    The default (``write``) is what a new cluster starts with: kms first, ``identity: {}``
    last until every object has been rewritten.
    """
    kms = (
        "      - kms:\n"
        "          apiVersion: v2\n"
        f"          name: {scalar(provider_name)}\n"
        f"          endpoint: {scalar('unix://' + socket_path)}\n"
        f"          timeout: {scalar(timeout)}\n"
    )
    identity = "      - identity: {}\n"
    providers = {
        Phase.READ: identity + kms,
        Phase.WRITE: kms + identity,
        Phase.FINAL: kms,
    }[phase]
    listed = "".join(f"      - {scalar(resource)}\n" for resource in resources)
    return (
        "apiVersion: apiserver.config.k8s.io/v1\n"
        "kind: EncryptionConfiguration\n"
        "resources:\n"
        "  - resources:\n"
        f"{listed}"
        "    providers:\n"
        f"{providers}"
    )


def commented(text: str, phase: Phase) -> str:
    """*text* under its phase's comment header."""
    header = "".join(f"# {line}".rstrip() + "\n" for line in phase.comment.splitlines())
    return header + text
