"""A Transit that answers from fields a test changes, for the status monitor's unit tests.

Typed against :class:`~bao_kms.openbao.protocols.ProbeTransit` where the tests hand it over, so
mypy checks its signatures against what the monitor depends on. Encrypt "seals" a plaintext as
its hex digits and Decrypt reverses that, so a deep probe round trip works without OpenBao.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

from bao_kms.identity import Identity
from bao_kms.openbao import KeyMetadata
from bao_kms.openbao.protocols import ProbeTransit
from bao_kms.status import StatusMonitor

from . import SAFE_KEY

IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")


class ScriptedTransit:
    """Answers like Transit would, from fields a test changes; counts every call by name."""

    def __init__(self) -> None:
        self.key = SAFE_KEY
        self.disable_upsert = True
        #: raised by the metadata reads (``read_key``, ``read_keys_config``)
        self.read_failure: Exception | None = None
        #: raised by ``encrypt`` (the deep probe's first half) and ``decrypt``
        self.encrypt_failure: Exception | None = None
        self.decrypt_failure: Exception | None = None
        self.calls: Counter[str] = Counter()
        #: when set, ``read_key`` waits for it (at most 5 s): a refresh held in flight
        self.gate: threading.Event | None = None

    def read_key(self, *, deadline: float | None = None) -> KeyMetadata:
        self.calls["read_key"] += 1
        if self.gate is not None:
            self.gate.wait(5)
        if self.read_failure:
            raise self.read_failure
        return self.key

    def read_keys_config(self, *, deadline: float | None = None) -> bool:
        self.calls["read_keys_config"] += 1
        if self.read_failure:
            raise self.read_failure
        return self.disable_upsert

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        self.calls["encrypt"] += 1
        if self.encrypt_failure:
            raise self.encrypt_failure
        return b"vault:v%d:" % key_version + plaintext.hex().encode()

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        self.calls["decrypt"] += 1
        if self.decrypt_failure:
            raise self.decrypt_failure
        return bytes.fromhex(ciphertext.split(b":", 2)[2].decode())


def monitor_on(transit: ScriptedTransit, clock: Callable[[], float]) -> StatusMonitor:
    """A status monitor probing *transit* on *clock*: probes every 30 s, deep probes every
    5 m, Status stale after 2 m (the shipped defaults)."""
    probe: ProbeTransit = transit  # mypy: the fake has the protocol's signatures
    return StatusMonitor(
        probe, IDENTITY, probe_interval=30, deep_probe_interval=300, max_staleness=120, clock=clock
    )
