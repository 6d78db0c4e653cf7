"""TLS to OpenBao: the SSL context the pool uses, and what a failed handshake means.

Verification is always on (CA bundle, host name); nothing here can turn it off. A client
certificate, when configured, is presented on every connection and re-read when its files
change: each new connection picks the current pair, so rotating the files (cert-manager, an
agent) needs no restart. Contexts are never changed once built; a rotation builds a new one
and swaps it in, because OpenSSL must not see a context modified while another thread uses it.
"""

from __future__ import annotations

import logging
import os
import socket
import ssl
import threading
import time
from typing import Any, TypeVar

from ..config import ClientCertificate
from ..errors import ConfigError, OpenBaoTlsUntrusted, OpenBaoUnavailable
from ..logs import LogThrottle
from .auth.credentials import CredentialFile, CredentialProblem, read_credential
from .connections import ConnectionPool

logger = logging.getLogger(__name__)

#: how long a stat of the client certificate files is trusted before the next one
CLIENT_CERT_STAT_INTERVAL = 1.0

_PEM_CERTIFICATE = b"-----BEGIN CERTIFICATE-----"
_E = TypeVar("_E", bound=BaseException)

# OpenSSL verify codes (x509_vfy.h) and what they tell the operator
_VERIFY_PROBLEMS = {
    9: "OpenBao's TLS certificate (or a CA above it) is not valid yet",
    10: "OpenBao's TLS certificate (or a CA above it) has expired",
    62: "OpenBao's TLS certificate is for another host name (see openbao.tlsServerName)",
    64: "OpenBao's TLS certificate is for another IP address",
}
_UNTRUSTED = "OpenBao's TLS certificate is not signed by a CA in openbao.caFile"
_UNKNOWN_ISSUER_CODES = frozenset({2, 18, 19, 20, 21})


class _EncryptedKey(Exception):
    """The key file asks for a password: never prompt on a terminal."""


def _no_password() -> bytes:
    raise _EncryptedKey


def _file_pair(cert_file: str, key_file: str) -> tuple[tuple[int, int, int], ...]:
    stats = (os.stat(cert_file), os.stat(key_file))
    return tuple((s.st_ino, s.st_size, s.st_mtime_ns) for s in stats)


def check_ca_file(ca_file: str) -> None:
    """ConfigError unless *ca_file* is a readable file holding at least one PEM certificate
    (OpenSSL's own message for an empty bundle says nothing an operator can act on)."""
    try:
        with open(ca_file, "rb") as file:
            content = file.read(16 * 1024 * 1024)
    except OSError as error:
        raise ConfigError(
            f"OpenBao CA file {ca_file} cannot be read: {error.strerror or 'not a file'}"
        ) from None
    if _PEM_CERTIFICATE not in content:
        raise ConfigError(f"OpenBao CA file {ca_file} holds no PEM certificate")


def check_client_certificate(cert: CredentialFile, key: CredentialFile) -> None:
    """Raise :class:`CredentialProblem` naming the file at fault unless the pair can be
    presented (read, then loaded into a scratch context to be sure)."""
    content, _ = read_credential(cert)
    if _PEM_CERTIFICATE not in content:
        raise CredentialProblem(cert, "holds no PEM certificate")
    content, _ = read_credential(key)
    if b"PRIVATE KEY-----" not in content:
        raise CredentialProblem(key, "holds no PEM private key")
    try:
        _verified_context(None).load_cert_chain(cert.path, key.path, password=_no_password)
    except _EncryptedKey:
        raise CredentialProblem(
            key, "is encrypted; an unencrypted key file (mode 0600) is needed"
        ) from None
    except ssl.SSLError as error:
        if error.reason == "KEY_VALUES_MISMATCH":
            raise CredentialProblem(
                key, f"does not belong to the certificate ({cert.key})"
            ) from None
        raise CredentialProblem(cert, "cannot be loaded with its key (not PEM?)") from None
    except OSError as error:
        raise CredentialProblem(cert, f"cannot be read ({error.strerror})") from None


def _check_client_certificate(client_cert: ClientCertificate) -> None:
    """ConfigError naming the config key of the file that cannot be used."""
    try:
        check_client_certificate(
            CredentialFile(
                client_cert.cert_key, "client certificate file", client_cert.cert_file, False
            ),
            CredentialFile(client_cert.key_key, "client key file", client_cert.key_file),
        )
    except CredentialProblem as problem:
        raise problem.config_error() from None


def present_current_certificate(pool: ConnectionPool) -> None:
    """Make the next connection of *pool* present the client certificate its files hold now:
    re-read them at once (not up to a second later) and drop idle connections."""
    context = pool.ssl_context
    if isinstance(context, ClientCertContext):
        context.current(force=True)
    pool.clear()


def _verified_context(ca_file: str | None) -> ssl.SSLContext:
    # create_default_context: CERT_REQUIRED, check_hostname, no SSLv3/TLS 1.0, sane ciphers
    return ssl.create_default_context(cafile=ca_file)


def make_context(
    ca_file: str | None, client_cert: ClientCertificate | tuple[str, str] | None = None
) -> ssl.SSLContext:
    """The pool's context; ConfigError for a CA file or client certificate that cannot work."""
    if ca_file is not None:
        check_ca_file(ca_file)
    if client_cert is not None:
        client_cert = ClientCertificate(*client_cert)
        _check_client_certificate(client_cert)
    try:
        if client_cert is None:
            return _verified_context(ca_file)
        return ClientCertContext(ca_file, client_cert.cert_file, client_cert.key_file)
    except OSError as error:  # ssl.SSLError is an OSError too
        reason = getattr(error, "reason", None) or error.strerror or type(error).__name__
        raise ConfigError(f"OpenBao CA file {ca_file} cannot be loaded: {reason}") from None


class ClientCertContext(ssl.SSLContext):
    """A verified context presenting a client certificate re-read when its files change.

    The connection pool calls ``wrap_socket``; this context holds the same settings as the
    inner one and hands each new connection to the current inner context.
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> ClientCertContext:
        return super().__new__(cls, ssl.PROTOCOL_TLS_CLIENT)

    def __init__(self, ca_file: str | None, cert_file: str, key_file: str) -> None:
        super().__init__()
        self.verify_mode = ssl.CERT_REQUIRED
        self.check_hostname = True
        self._ca_file = ca_file
        self._cert_file = cert_file
        self._key_file = key_file
        self._lock = threading.Lock()
        self._throttle = LogThrottle()
        self._files = _file_pair(cert_file, key_file)
        self._inner = self._build()
        self._checked_at = time.monotonic()

    def _build(self) -> ssl.SSLContext:
        context = _verified_context(self._ca_file)
        context.load_cert_chain(self._cert_file, self._key_file, password=_no_password)
        return context

    def current(self, *, force: bool = False) -> ssl.SSLContext:
        """The inner context for a new connection, rebuilt if the files changed (looked at
        once a second, or now when *force*)."""
        if not force and time.monotonic() - self._checked_at < CLIENT_CERT_STAT_INTERVAL:
            return self._inner
        with self._lock:
            if not force and time.monotonic() - self._checked_at < CLIENT_CERT_STAT_INTERVAL:
                return self._inner
            self._checked_at = time.monotonic()
            try:
                files = _file_pair(self._cert_file, self._key_file)
                if files != self._files:
                    self._inner = self._build()
                    self._files = files
                    logger.info("TLS client certificate reloaded", extra={"path": self._cert_file})
            except (OSError, _EncryptedKey):
                # A half-written pair during rotation, or a broken one: keep presenting the
                # last good certificate; the next connection looks again.
                if self._throttle.admit("reload") is not None:
                    logger.warning(
                        "TLS client certificate files unusable; presenting the previous pair",
                        extra={"path": self._cert_file},
                    )
            return self._inner

    def wrap_socket(self, sock: socket.socket, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        return self.current().wrap_socket(sock, *args, **kwargs)


def tls_failure(cause: BaseException) -> OpenBaoUnavailable:
    """The error for a failed TLS handshake, naming what an operator can fix.

    OpenSSL's verify message and alert reasons are fixed strings from the library, never data
    from the peer, so they may be shown.
    """
    verify = _find(cause, ssl.SSLCertVerificationError)
    if verify is not None:
        code = verify.verify_code
        if code in _VERIFY_PROBLEMS:
            return OpenBaoTlsUntrusted(_VERIFY_PROBLEMS[code])
        if code in _UNKNOWN_ISSUER_CODES:
            return OpenBaoTlsUntrusted(_UNTRUSTED)
        return OpenBaoTlsUntrusted(
            f"OpenBao's TLS certificate failed verification ({verify.verify_message})"
        )
    error = _find(cause, ssl.SSLError)
    reason = getattr(error, "reason", None)
    if isinstance(reason, str) and reason.isupper():
        # e.g. TLSV13_ALERT_CERTIFICATE_REQUIRED: OpenBao wants a client certificate
        return OpenBaoUnavailable(f"TLS handshake with OpenBao failed ({reason.lower()})")
    return OpenBaoUnavailable("TLS connection to OpenBao failed")


def _find(error: BaseException, kind: type[_E]) -> _E | None:
    """The first *kind* in *error*, its args, causes and contexts (a wrapped error nests it)."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, kind):
            return current
        pending += [arg for arg in current.args if isinstance(arg, BaseException)]
        pending += [e for e in (current.__cause__, current.__context__) if e is not None]
    return None
