"""TLS certificate auth: the client certificate on the connection is the credential.

The pool presents the certificate on every connection (:mod:`bao_kms.openbao._tls` re-reads
the files when they change), so the login itself carries only the role name. Idle connections
are dropped before each login: a keep-alive connection would still show OpenBao the
certificate it was opened with.
"""

from __future__ import annotations

import os
from typing import Any

from .._tls import check_client_certificate
from .base import OpenBaoRequests
from .credentials import CredentialFile


class CertLogin:
    """``POST auth/<mountPath>/login`` with ``name`` (the OpenBao cert role), if given."""

    name = "cert"
    label = "TLS certificate"

    def __init__(
        self,
        mount_path: str,
        role: str | None,
        cert_file: str | os.PathLike[str],
        key_file: str | os.PathLike[str],
    ) -> None:
        self.path = f"auth/{mount_path}/login"
        self.role = role
        self._cert = CredentialFile(
            "auth.cert.certFile", "client certificate file", os.fspath(cert_file), secret=False
        )
        self._key = CredentialFile("auth.cert.keyFile", "client key file", os.fspath(key_file))

    def check(self) -> None:
        self._check()

    def login_request(self, openbao: OpenBaoRequests) -> tuple[str, dict[str, Any]]:
        self._check()
        # Logins are rare (once per token lifetime); dropping idle connections first costs a
        # handshake or two and guarantees the login shows the certificate the files hold now,
        # even right after a rotation or after a login refused over a stale connection.
        openbao.reset_connections()
        return self.path, ({"name": self.role} if self.role else {})

    def _check(self) -> None:
        check_client_certificate(self._cert, self._key)
