"""A KMS v2 client over the Unix socket, as kube-apiserver dials it (``probe`` and tests).

:func:`socket_path` is the one place a socket argument is read: a plain path (relative to the
working directory or absolute), or the ``unix:///abs/path`` endpoint an EncryptionConfiguration
names, so operators can paste either.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from types import TracebackType

import grpc

from .._proto import api_pb2, api_pb2_grpc

UNIX_SCHEME = "unix:"
# a URI scheme (RFC 3986) followed by "//": how to tell "tcp://host" from a file named "a:b"
_OTHER_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


class InvalidSocketEndpoint(ValueError):
    """A socket argument that is neither a path nor a ``unix://`` endpoint naming one."""


def socket_path(endpoint: str | os.PathLike[str]) -> str:
    """The absolute filesystem path of a provider socket given as a path or ``unix://`` URI.

    Accepted: ``kms.sock`` / ``run/kms.sock`` (relative to the working directory),
    ``/run/kms.sock``, ``unix:///run/kms.sock`` (kube-apiserver's form) and ``unix:kms.sock`` /
    ``unix:/run/kms.sock`` (gRPC's). Refused with :class:`InvalidSocketEndpoint`: any other
    scheme, ``unix://host/...`` and abstract sockets (``unix:///@name``), which the provider
    never listens on.
    """
    text = os.fspath(endpoint)
    if text.startswith(UNIX_SCHEME):
        path = text[len(UNIX_SCHEME) :]
        if path.startswith("//"):
            path = path[2:]
            if not path.startswith("/"):
                raise InvalidSocketEndpoint(
                    "a unix:// endpoint needs an absolute path, as in unix:///run/kms.sock"
                )
        if path.startswith("/@"):
            raise InvalidSocketEndpoint("abstract Unix sockets are not supported")
    elif _OTHER_URI.match(text):
        scheme = text.split(":", 1)[0]
        raise InvalidSocketEndpoint(
            f"only Unix socket endpoints are supported, not {scheme}:// "
            "(give a path or unix:///path/to/kms.sock)"
        )
    else:
        path = text
    if not path:
        raise InvalidSocketEndpoint("the socket path is empty")
    return os.path.abspath(path)  # not resolve(): the path as given, symlinks included


class KmsClient:
    """Blocking Status/Encrypt/Decrypt calls with one timeout for every call, no retries."""

    def __init__(self, endpoint: str | os.PathLike[str], *, timeout: float = 3.0) -> None:
        """*endpoint*: a socket path or ``unix://`` URI (see :func:`socket_path`)."""
        self.timeout = timeout
        # authority "localhost" is what kube-apiserver sends on its unix:// dial
        self._channel = grpc.insecure_channel(
            f"unix://{socket_path(endpoint)}",
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
