"""A throwaway PKI and JWT signer for tests, made with ``cryptography``: nothing is downloaded.

:class:`TestPki` is one CA in a directory: server certificates for 127.0.0.1 (optionally with a
DNS name, or expired / not yet valid), client certificates for cert auth. :class:`JwtSigner` is
an RSA key pair whose public half OpenBao's JWT auth gets as ``jwt_validation_pubkeys``.
Private keys are written 0600, as the provider demands of credential files.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import itertools
import json
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_serials = itertools.count(1000)
_DAY = datetime.timedelta(days=1)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def write_private(path: Path, text: str) -> Path:
    """A credential file as an operator should write it: mode 0600."""
    path.write_text(text)
    path.chmod(0o600)
    return path


class TestPki:
    """A CA and the certificates it signs, as PEM files in *directory*."""

    __test__ = False  # not a pytest test class

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(self.key.public_key())
            .serial_number(next(_serials))
            .not_valid_before(now - _DAY)
            .not_valid_after(now + 30 * _DAY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = directory / f"{name}.pem"
        self.ca_file.write_bytes(self.certificate.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_pem(self) -> str:
        return self.ca_file.read_text()

    def _issue(
        self,
        file_stem: str,
        common_name: str,
        *,
        usage: x509.ObjectIdentifier,
        ips: tuple[str, ...] = (),
        dns: tuple[str, ...] = (),
        not_before: datetime.datetime | None = None,
        not_after: datetime.datetime | None = None,
    ) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(next(_serials))
            .not_valid_before(not_before or now - _DAY)
            .not_valid_after(not_after or now + 7 * _DAY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        names: list[x509.GeneralName] = [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
        names += [x509.DNSName(name) for name in dns]
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        certificate = builder.sign(self.key, hashes.SHA256())
        cert_path = self.directory / f"{file_stem}.pem"
        key_path = self.directory / f"{file_stem}-key.pem"
        cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        _write_key(key_path, key)
        return cert_path, key_path

    def server(
        self,
        file_stem: str = "server",
        *,
        ips: tuple[str, ...] = ("127.0.0.1",),
        dns: tuple[str, ...] = (),
        expired: bool = False,
        not_yet_valid: bool = False,
    ) -> tuple[Path, Path]:
        """(certificate, key) for a listener on *ips* / *dns*; optionally out of its validity."""
        now = _now()
        window: dict[str, datetime.datetime] = {}
        if expired:
            window = {"not_before": now - 10 * _DAY, "not_after": now - _DAY}
        elif not_yet_valid:
            window = {"not_before": now + _DAY, "not_after": now + 10 * _DAY}
        return self._issue(
            file_stem,
            "openbao",
            usage=ExtendedKeyUsageOID.SERVER_AUTH,
            ips=ips,
            dns=dns,
            **window,
        )

    def client(self, common_name: str = "kms-provider", file_stem: str = "") -> tuple[Path, Path]:
        """(certificate, key) for TLS client auth."""
        return self._issue(
            file_stem or f"client-{common_name}",
            common_name,
            usage=ExtendedKeyUsageOID.CLIENT_AUTH,
        )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class JwtSigner:
    """RS256 JWTs from a fresh RSA key; :attr:`public_pem` goes to ``jwt_validation_pubkeys``."""

    def __init__(self, issuer: str = "https://issuer.test", audience: str = "openbao") -> None:
        self.issuer = issuer
        self.audience = audience
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_pem = (
            self._key.public_key()
            .public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
            .decode("ascii")
        )

    def sign(self, subject: str = "kms-provider", *, lifetime: float = 600, **claims: Any) -> str:
        """A JWT for *subject*, valid from a minute ago for *lifetime* seconds; *claims* add
        to or override the standard ones (``exp=None`` leaves ``exp`` out)."""
        now = time.time()
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": int(now) - 60,
            "nbf": int(now) - 60,
            "exp": int(now + lifetime),
        }
        payload.update(claims)
        payload = {key: value for key, value in payload.items() if value is not None}
        header = {"alg": "RS256", "typ": "JWT"}
        signing_input = (
            _b64url(json.dumps(header).encode()) + "." + _b64url(json.dumps(payload).encode())
        )
        signature = self._key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return signing_input + "." + _b64url(signature)
