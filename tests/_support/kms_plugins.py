"""KMS v2 plugins for testing the conformance harness: one correct, one per broken rule.

Each is a ``v2.KeyManagementService`` servicer (the generated stubs) to serve on a Unix
socket (``tests/conformance/conftest.py`` does, with :func:`serve`). :class:`FakePlugin` is a
small but correct plugin: one AES-256-GCM key per key_id, the annotations bound as AAD,
malformed and unknown key_ids refused before any work. Each broken variant overrides one
hook to break one rule, so a test can demand that the harness fails exactly that rule's check
and nothing else.
"""

from __future__ import annotations

import os
import re
import secrets
import threading
import time
from collections.abc import Mapping
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bao_kms._proto import api_pb2, api_pb2_grpc

# an uppercase prefix and lowercase hex: a garbled key_id (reversed) is malformed, while the
# harness's same-shape variant (one hex digit changed) stays well-formed
KEY_ID = re.compile(r"FK1-[0-9a-f]{32,2048}")
NONCE_BYTES = 12


def canonical_aad(annotations: Mapping[str, bytes]) -> bytes:
    return b"\n".join(key.encode() + b"=" + value for key, value in sorted(annotations.items()))


class FakePlugin(api_pb2_grpc.KeyManagementServiceServicer):
    """A correct KMS v2 plugin; the hook methods are what broken variants override."""

    version = "v2"
    healthz = "ok"
    annotation_key = "version.fake-kms.example.com"

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.keys: dict[str, bytes] = {}
        self.current = ""
        self.rotate()

    def rotate(self) -> None:
        """A new key with a new key_id becomes current; old ones stay for Decrypt."""
        with self.lock:
            self.current = self.new_key_id()
            self.keys[self.current] = AESGCM.generate_key(bit_length=256)

    # --- hooks ------------------------------------------------------------------------------
    def new_key_id(self) -> str:
        return "FK1-" + secrets.token_hex(16)

    def status_key_id(self) -> str:
        return self.current

    def encrypt_key_id(self, key_id: str) -> str:
        return key_id

    def annotations(self) -> dict[str, bytes]:
        return {self.annotation_key: b"1"}

    def aad(self, annotations: Mapping[str, bytes]) -> bytes:
        return canonical_aad(annotations)

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + AESGCM(key).encrypt(nonce, plaintext, aad)

    def open(self, key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        return AESGCM(key).decrypt(ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:], aad)

    def key_for(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id)

    def answer(self, plaintext: bytes) -> bytes:
        return plaintext

    # --- the three RPCs -----------------------------------------------------------------------
    def Status(self, request: Any, context: Any) -> api_pb2.StatusResponse:
        return api_pb2.StatusResponse(
            version=self.version, healthz=self.healthz, key_id=self.status_key_id()
        )

    def Encrypt(self, request: Any, context: Any) -> api_pb2.EncryptResponse:
        key_id = self.current
        annotations = self.annotations()
        ciphertext = self.seal(self.keys[key_id], request.plaintext, self.aad(annotations))
        return api_pb2.EncryptResponse(
            ciphertext=ciphertext, key_id=self.encrypt_key_id(key_id), annotations=annotations
        )

    def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        if not KEY_ID.fullmatch(request.key_id):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed key_id")
        key = self.key_for(request.key_id)
        if key is None:
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown key_id")
        try:
            plaintext = self.open(key, request.ciphertext, self.aad(dict(request.annotations)))
        except InvalidTag:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "does not authenticate")
        return api_pb2.DecryptResponse(plaintext=self.answer(plaintext))


# --- broken variants: each breaks one rule --------------------------------------------------------
class EncryptKeyIdDiffers(FakePlugin):
    def encrypt_key_id(self, key_id: str) -> str:
        return key_id[:-1] + ("0" if key_id[-1] != "0" else "1")


class UppercaseAnnotationKey(FakePlugin):
    annotation_key = "Version.Fake-KMS.example.com"


class OneLabelAnnotationKey(FakePlugin):
    annotation_key = "fakekmsversion"


class OversizedAnnotations(FakePlugin):
    def annotations(self) -> dict[str, bytes]:
        return {**super().annotations(), "padding.fake-kms.example.com": b"p" * 32768}


class OversizedCiphertext(FakePlugin):
    """2 KiB ciphertexts: a padded envelope (the padding is dropped again on Decrypt)."""

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        sealed = super().seal(key, plaintext, aad)
        return sealed + b"\0" * (2048 - len(sealed))


class HealthzFine(FakePlugin):
    healthz = "fine"


class VersionV1(FakePlugin):
    version = "v1"


class OversizedKeyId(FakePlugin):
    def new_key_id(self) -> str:
        return "FK1-" + secrets.token_hex(600)  # 1204 bytes


class FlipFlopKeyId(FakePlugin):
    """Two keys; Status alternates between their key_ids on every call."""

    def __init__(self) -> None:
        super().__init__()
        self.rotate()
        self.calls = 0

    def status_key_id(self) -> str:
        with self.lock:
            self.calls += 1
            self.current = list(self.keys)[self.calls % 2]
            return self.current


class WrongPlaintext(FakePlugin):
    def answer(self, plaintext: bytes) -> bytes:
        return bytes([plaintext[0] ^ 0x80]) + plaintext[1:]


class AcceptsTamperedCiphertext(FakePlugin):
    """Unauthenticated encryption (a SHA-256 keystream), annotations still checked by value."""

    def seal(self, key: bytes, plaintext: bytes, aad: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + _xor(plaintext, _keystream(key, nonce, len(plaintext)))

    def open(self, key: bytes, ciphertext: bytes, aad: bytes) -> bytes:
        if aad != self.aad(self.annotations()):
            raise InvalidTag()
        nonce, body = ciphertext[:NONCE_BYTES], ciphertext[NONCE_BYTES:]
        return _xor(body, _keystream(key, nonce, len(body)))


class AcceptsOtherKeyId(FakePlugin):
    """Any well-formed key_id decrypts with the current key."""

    def key_for(self, key_id: str) -> bytes | None:
        return self.keys.get(key_id) or self.keys[self.current]


class IgnoresAnnotations(FakePlugin):
    def aad(self, annotations: Mapping[str, bytes]) -> bytes:
        return b""


class ForgetsOldKeys(FakePlugin):
    """Rotation drops every earlier key: data written before it can never be read."""

    def rotate(self) -> None:
        super().rotate()
        with self.lock:
            self.keys = {self.current: self.keys[self.current]}


class RefusesConcurrentDuplicates(FakePlugin):
    """A second Decrypt of a ciphertext already in flight is refused (RESOURCE_EXHAUSTED)."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight: set[bytes] = set()

    def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        with self.lock:
            duplicate = request.ciphertext in self.in_flight
            self.in_flight.add(request.ciphertext)
        if duplicate:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "duplicate in flight")
        try:
            time.sleep(0.005)  # long enough for the burst's other threads to overlap
            return super().Decrypt(request, context)
        finally:
            with self.lock:
                self.in_flight.discard(request.ciphertext)


class SlowDecrypt(FakePlugin):
    def Decrypt(self, request: Any, context: Any) -> api_pb2.DecryptResponse:
        time.sleep(0.015)
        return super().Decrypt(request, context)


def _keystream(key: bytes, nonce: bytes, size: int) -> bytes:
    blocks = []
    for counter in range((size + 31) // 32):
        digest = hashes.Hash(hashes.SHA256())
        digest.update(key + nonce + counter.to_bytes(4, "big"))
        blocks.append(digest.finalize())
    return b"".join(blocks)[:size]


def _xor(data: bytes, stream: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(data, stream, strict=True))


def serve(plugin: FakePlugin, socket_path: Path) -> grpc.Server:
    """Start *plugin* on *socket_path*; the caller stops the returned server."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=40))
    api_pb2_grpc.add_KeyManagementServiceServicer_to_server(plugin, server)
    server.add_insecure_port(f"unix:{socket_path}")
    server.start()
    return server
