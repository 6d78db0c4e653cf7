"""What the layers above need from OpenBao, as protocols (``TransitClient`` implements them all).

The servicer needs only the cipher calls; the probes also read key metadata. Depending on these
instead of the concrete client keeps the request path and the probes testable with fakes that
mypy checks against the same signatures the real client has.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from ..errors import KmsError
from .key_metadata import KeyMetadata


@runtime_checkable
class TransitCipher(Protocol):
    """Transit encrypt/decrypt with explicit key version and AAD; bytes in, bytes out."""

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes: ...

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        """*arrived*: when the caller's request arrived (the servicer's clock). A cipher that
        shares calls may answer with what OpenBao answered for the same pair after that
        moment; every other cipher ignores it."""
        ...


@runtime_checkable
class ProbeTransit(TransitCipher, Protocol):
    """The cipher plus the metadata reads the status probes make."""

    def read_key(self, *, deadline: float | None = None) -> KeyMetadata: ...

    def read_keys_config(self, *, deadline: float | None = None) -> bool: ...


@runtime_checkable
class BatchTransit(TransitCipher, Protocol):
    """The cipher plus Transit ``batch_input`` decrypts, which the decrypt batcher sends."""

    def decrypt_batch(
        self, items: Sequence[tuple[bytes, str]], *, deadline: float | None = None
    ) -> list[bytes | KmsError]: ...
