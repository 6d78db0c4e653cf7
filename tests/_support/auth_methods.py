"""Each login method set up for real on an OpenBao server, as docs/openbao-setup.md says.

A :class:`MethodSetup` enables its auth method with short token TTLs, writes the credential
files the provider reads (mode 0600), and gives the config's ``auth`` section. It can also do
to the credential what operators and attackers do: rotate it, revoke the tokens it got, break
its files. ``api`` is any ``(method, path, body) -> answer`` with the root token (a server's
or a raft cluster's), so the same set-ups run on one node and on three.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _support.pki import JwtSigner, TestPki, write_private
from bao_kms.manifests import openbao_policy

Api = Callable[..., Any]

POLICY = "bao-kms-provider"


def install_policy(api: Api, mount: str = "transit", key: str = "kms") -> None:
    api("PUT", f"sys/policies/acl/{POLICY}", {"policy": openbao_policy(mount, key)})


class MethodSetup:
    """Base: the method's mount, its token TTLs, and the directory of its files."""

    method = ""

    def __init__(self, api: Api, workdir: Path, *, ttl: str = "2s", max_ttl: str = "5s") -> None:
        self.api = api
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.ttl = ttl
        self.max_ttl = max_ttl
        self.mount = self.method

    def token_settings(self) -> dict[str, Any]:
        return {"token_policies": [POLICY], "token_ttl": self.ttl, "token_max_ttl": self.max_ttl}

    def enable(self) -> MethodSetup:
        install_policy(self.api)
        self.api("POST", f"sys/auth/{self.mount}", {"type": self.method})
        self.configure()
        return self

    def configure(self) -> None:
        raise NotImplementedError

    def auth_section(self) -> dict[str, Any]:
        raise NotImplementedError

    def revoke_tokens(self) -> None:
        """Revoke every token this method issued, out of band (an operator, an incident)."""
        self.api("PUT", f"sys/leases/revoke-prefix/auth/{self.mount}/login")

    def rotate(self) -> None:
        """Replace the credential files with a new credential; the old one stops working."""
        raise NotImplementedError


class AppRoleSetup(MethodSetup):
    method = "approle"

    def configure(self) -> None:
        self.role = f"auth/{self.mount}/role/kms"
        self.api("POST", self.role, {**self.token_settings(), "bind_secret_id": True})
        role_id = self.api("GET", f"{self.role}/role-id")["data"]["role_id"]
        self.role_id_file = write_private(self.workdir / "role-id", role_id + "\n")
        self.secret_id_file = self.workdir / "secret-id"
        self.secret_id = self._new_secret_id()

    def _new_secret_id(self) -> str:
        secret_id: str = self.api("POST", f"{self.role}/secret-id")["data"]["secret_id"]
        replace_private(self.secret_id_file, secret_id + "\n")
        return secret_id

    def auth_section(self) -> dict[str, Any]:
        return {
            "method": "approle",
            "approle": {
                "mountPath": self.mount,
                "roleIdFile": str(self.role_id_file),
                "secretIdFile": str(self.secret_id_file),
            },
        }

    def rotate(self) -> None:
        old = self.secret_id
        self.secret_id = self._new_secret_id()
        self.api("POST", f"{self.role}/secret-id/destroy", {"secret_id": old})


class JwtSetup(MethodSetup):
    method = "jwt"

    def configure(self) -> None:
        self.signer = JwtSigner()
        self.api(
            "POST",
            f"auth/{self.mount}/config",
            {
                "jwt_validation_pubkeys": [self.signer.public_pem],
                "bound_issuer": self.signer.issuer,
            },
        )
        self.subject = "kms-provider"
        self._write_role()
        self.jwt_file = self.workdir / "jwt"
        replace_private(self.jwt_file, self.signer.sign(self.subject, lifetime=3600))

    def _write_role(self) -> None:
        self.api(
            "POST",
            f"auth/{self.mount}/role/kms",
            {
                **self.token_settings(),
                "role_type": "jwt",
                "user_claim": "sub",
                "bound_subject": self.subject,
                "bound_audiences": [self.signer.audience],
            },
        )

    def auth_section(self) -> dict[str, Any]:
        return {
            "method": "jwt",
            "jwt": {"mountPath": self.mount, "role": "kms", "tokenFile": str(self.jwt_file)},
        }

    def rotate(self) -> None:
        # a new subject: only the JWT written now satisfies the role
        self.subject = f"kms-provider-{os.urandom(3).hex()}"
        replace_private(self.jwt_file, self.signer.sign(self.subject, lifetime=3600))
        self._write_role()


class CertSetup(MethodSetup):
    method = "cert"

    def configure(self) -> None:
        self.client_ca = TestPki(self.workdir / "client-ca", "client-ca")
        self.cert_file = self.workdir / "client.pem"
        self.key_file = self.workdir / "client-key.pem"
        self._issue(self.client_ca)

    def _issue(self, ca: TestPki) -> None:
        cert, key = ca.client("kms-provider", file_stem=f"issued-{os.urandom(3).hex()}")
        # the key first: a connection made in between fails to load and keeps the old pair
        replace_private(self.key_file, key.read_text())
        replace_private(self.cert_file, cert.read_text())
        self.api(
            "POST",
            f"auth/{self.mount}/certs/kms",
            {
                **self.token_settings(),
                "certificate": ca.ca_pem,
                "allowed_common_names": ["kms-provider"],
            },
        )

    def auth_section(self) -> dict[str, Any]:
        return {
            "method": "cert",
            "cert": {
                "mountPath": self.mount,
                "role": "kms",
                "certFile": str(self.cert_file),
                "keyFile": str(self.key_file),
            },
        }

    def rotate(self) -> None:
        # a certificate from another CA, and the role trusts only that CA from now on
        self._issue(TestPki(self.workdir / f"client-ca-{os.urandom(3).hex()}", "client-ca-2"))


SETUPS: dict[str, type[MethodSetup]] = {
    "approle": AppRoleSetup,
    "jwt": JwtSetup,
    "cert": CertSetup,
}


def replace_private(path: Path, text: str) -> None:
    """Atomic replace with mode 0600, as agents and projected volumes rotate files."""
    temporary = write_private(path.with_name(f".{path.name}.new"), text)
    os.replace(temporary, path)
