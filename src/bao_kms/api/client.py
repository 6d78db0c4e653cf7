"""A KMS v2 client over the Unix socket, as kube-apiserver dials it (``probe`` and tests)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import TracebackType

import grpc

from .._proto import api_pb2, api_pb2_grpc


class KmsClient:
    """Blocking Status/Encrypt/Decrypt calls with one timeout for every call, no retries."""

    def __init__(self, socket_path: str | os.PathLike[str], *, timeout: float = 3.0) -> None:
        self.timeout = timeout
        # authority "localhost" is what kube-apiserver sends on its unix:// dial
        self._channel = grpc.insecure_channel(
            f"unix://{os.fspath(socket_path)}",
            options=[("grpc.default_authority", "localhost"), ("grpc.enable_retries", 0)],
        )
        self._stub = api_pb2_grpc.KeyManagementServiceStub(self._channel)

    def status(self) -> api_pb2.StatusResponse:
        return self._stub.Status(api_pb2.StatusRequest(), timeout=self.timeout)

    def encrypt(self, plaintext: bytes, uid: str = "") -> api_pb2.EncryptResponse:
        return self._stub.Encrypt(
            api_pb2.EncryptRequest(plaintext=plaintext, uid=uid), timeout=self.timeout
        )

    def decrypt(
        self,
        ciphertext: bytes,
        key_id: str,
        annotations: Mapping[str, bytes],
        uid: str = "",
    ) -> api_pb2.DecryptResponse:
        request = api_pb2.DecryptRequest(
            ciphertext=ciphertext, key_id=key_id, annotations=dict(annotations), uid=uid
        )
        return self._stub.Decrypt(request, timeout=self.timeout)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> KmsClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
