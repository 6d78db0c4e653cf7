"""The request path's Transit calls, each outcome reported to the status monitor.

The servicer's Encrypt and Decrypt go through :class:`ReportingTransit`, so every answer they
meet reaches :meth:`~.monitor.StatusMonitor.notice` (which decides whether it is news for
Status and wakes the probes, rate-limited). The servicer itself knows nothing of this.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import KmsError
from ..openbao.protocols import TransitCipher


class ReportingTransit:
    """A :class:`TransitCipher` that tells *notice* how each call ended (None: success)."""

    def __init__(
        self, transit: TransitCipher, notice: Callable[[BaseException | None], None]
    ) -> None:
        self._transit = transit
        self._notice = notice

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        try:
            ciphertext = self._transit.encrypt(
                plaintext, key_version, associated_data, deadline=deadline
            )
        except KmsError as error:
            self._notice(error)
            raise
        self._notice(None)
        return ciphertext

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        try:
            plaintext = self._transit.decrypt(
                ciphertext, associated_data, deadline=deadline, arrived=arrived
            )
        except KmsError as error:
            self._notice(error)
            raise
        self._notice(None)
        return plaintext
