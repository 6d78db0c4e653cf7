"""The ``auth`` section (a discriminated union on ``method``) and the Auth it builds.

The shape tests below hold for every method (``token``, ``approle``, ``jwt``, ``cert``), so a
new method class that breaks the YAML contract (``method`` plus one block named after it)
fails here and at import.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from _support import FakeClock
from _support.config_documents import MARKER, minimal, refused, with_value, without
from bao_kms.config import (
    AuthMethod,
    ClientCertificate,
    Config,
    TokenAuth,
    TokenAuthConfig,
    parse_config,
)
from bao_kms.openbao.auth import Auth, TokenFileAuth
from bao_kms.openbao.auth.factory import build_auth


def _methods() -> dict[str, type[AuthMethod]]:
    """The union's members by method name, read from the model itself."""
    annotation = Config.model_fields["auth"].annotation
    members = typing.get_args(annotation) or (annotation,)
    return {member.method_name: member for member in members}


#: one valid ``auth`` section per method; a new method must add its own
EXAMPLES: dict[str, dict[str, Any]] = {
    "token": {"method": "token", "token": {"file": "/etc/bao-kms/token"}},
    # the YAML, verbatim
    "approle": {
        "method": "approle",
        "approle": {
            "mountPath": "approle",
            "roleIdFile": "/etc/openbao-kms/role-id",
            "secretIdFile": "/etc/openbao-kms/secret-id",
        },
    },
    "jwt": {
        "method": "jwt",
        "jwt": {"mountPath": "jwt", "role": "kms", "tokenFile": "/var/run/openbao-kms/jwt"},
    },
    "cert": {
        "method": "cert",
        "cert": {
            "mountPath": "cert",
            "role": "kms",
            "certFile": "/etc/openbao-kms/client.pem",
            "keyFile": "/etc/openbao-kms/client-key.pem",
        },
    },
}


# --- the union's shape --------------------------------------------------------------------------


def test_every_method_has_an_example() -> None:
    assert set(_methods()) == set(EXAMPLES)


@pytest.mark.parametrize("method", EXAMPLES)
def test_each_method_is_a_tag_and_one_block_named_after_it(method: str) -> None:
    member = _methods()[method]
    assert issubclass(member, AuthMethod)
    assert set(member.model_fields) == {"method", method}
    block = member.model_fields[method].annotation
    assert isinstance(block, type) and issubclass(block, BaseModel)
    config = parse_config(with_value("auth", EXAMPLES[method]))
    assert isinstance(config.auth, member)
    assert config.auth.method == method


def test_a_method_class_without_its_block_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="'kerberos' settings block"):

        class KerberosAuth(AuthMethod):
            method: Literal["kerberos"]
            keytab: TokenAuthConfig


def test_token_method_reads_the_file_path() -> None:
    config = parse_config(minimal())
    assert isinstance(config.auth, TokenAuth)
    assert config.auth.token == TokenAuthConfig(file=Path("/etc/bao-kms/token"))


def test_method_may_be_omitted_for_token() -> None:
    """Configs written before there was a choice of method keep loading."""
    config = parse_config(without("auth.method"))
    assert isinstance(config.auth, TokenAuth)


def test_dumped_auth_names_its_method_and_loads_again() -> None:
    config = parse_config(without("auth.method"))
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["auth"] == {"method": "token", "token": {"file": "/etc/bao-kms/token"}}
    assert parse_config(dumped) == config


# --- refusals name the YAML path ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["kubernetes", f"{MARKER}", "", "Token", None, 5, [MARKER]])
def test_unknown_method_lists_the_supported_ones_without_echoing(method: Any) -> None:
    message = refused(with_value("auth.method", method))
    assert "auth.method: is not supported; must be one of: token, approle, jwt, cert" in message
    assert MARKER not in message


def test_token_method_without_token_file_refused() -> None:
    message = refused(without("auth.token"))
    assert "auth: method token needs token.file" in message


def test_token_without_file_refused() -> None:
    assert "auth.token.file" in refused(with_value("auth.token", {}))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("auth.token.file", 5, "auth.token.file:"),
        ("auth.token.bogusKey", "x", "auth.token: unknown key"),  # the key may be a secret
        ("auth.token", "/etc/token", "auth.token: must be a mapping"),
        ("auth.approle", {"roleIdFile": "/r"}, "auth.approle: unknown key"),
    ],
)
def test_problems_inside_the_method_name_the_path_as_written(
    path: str, value: Any, expected: str
) -> None:
    """pydantic puts the chosen tag into error locations (auth.token.token.file); not here."""
    message = refused(with_value(path, value))
    assert expected in message
    assert "token.token" not in message


@pytest.mark.parametrize("value", [f"{MARKER}", [MARKER], None, 7])
def test_auth_must_be_a_mapping(value: Any) -> None:
    message = refused(with_value("auth", value))
    assert "auth: must be a mapping" in message
    assert MARKER not in message


# --- build_auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", EXAMPLES)
def test_build_auth_gives_an_auth_for_every_method(method: str) -> None:
    config = parse_config(with_value("auth", EXAMPLES[method]))
    assert isinstance(build_auth(config.auth, clock=FakeClock()), Auth)


def test_build_auth_token_reads_the_configured_file_on_the_given_clock(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s.first\n")
    token_file.chmod(0o600)
    clock = FakeClock()
    config = parse_config(with_value("auth.token.file", str(token_file)))
    auth = build_auth(config.auth, clock=clock)
    assert isinstance(auth, TokenFileAuth)
    assert auth.path == str(token_file)
    assert auth.token() == "s.first"
    token_file.write_text("s.second-longer\n")
    assert auth.token() == "s.first"  # the stat is trusted until the injected clock moves
    clock.advance(5)
    assert auth.token() == "s.second-longer"


@pytest.mark.parametrize("method", ["approle", "jwt", "cert"])
def test_dumped_login_methods_load_again(method: str) -> None:
    config = parse_config(with_value("auth", EXAMPLES[method]))
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["auth"] == EXAMPLES[method]
    assert parse_config(dumped) == config


def test_mount_paths_default_to_the_method_name() -> None:
    for method in ("approle", "jwt", "cert"):
        document = with_value("auth", EXAMPLES[method])
        del document["auth"][method]["mountPath"]
        block = getattr(parse_config(document).auth, method)
        assert block.mount_path == method


@pytest.mark.parametrize(
    ("method", "missing"),
    [
        ("approle", "approle.roleIdFile, approle.secretIdFile"),
        ("jwt", "jwt.role, jwt.tokenFile"),
        ("cert", "cert.certFile, cert.keyFile"),
    ],
)
def test_login_method_without_its_block_names_the_keys(method: str, missing: str) -> None:
    assert f"auth: method {method} needs {missing}" in refused(
        with_value("auth", {"method": method})
    )


def test_mount_path_is_a_plain_path() -> None:
    document = with_value("auth", EXAMPLES["approle"])
    document["auth"]["approle"]["mountPath"] = "../sys"
    assert "auth.approle.mountPath" in refused(document)


def test_cert_method_needs_https() -> None:
    document = with_value("auth", EXAMPLES["cert"])
    document["openbao"].update(addresses=["http://127.0.0.1:8200"], allowInsecureHttp=True)
    assert "auth.method cert needs https://" in refused(document)


def test_cert_method_and_a_second_client_certificate_refused() -> None:
    document = with_value("auth", EXAMPLES["cert"])
    document["openbao"].update(clientCertFile="/c.pem", clientKeyFile="/k.pem")
    assert "leave openbao.clientCertFile unset" in refused(document)


def test_client_certificate_and_key_come_together() -> None:
    assert "given together" in refused(with_value("openbao.clientCertFile", "/c.pem"))
    assert "given together" in refused(with_value("openbao.clientKeyFile", "/k.pem"))


def test_tls_client_certificate_is_the_one_presented() -> None:
    assert parse_config(minimal()).tls_client_certificate() is None
    document = with_value("openbao.clientCertFile", "/c.pem")
    document["openbao"]["clientKeyFile"] = "/k.pem"
    assert parse_config(document).tls_client_certificate() == ClientCertificate(
        "/c.pem", "/k.pem", "openbao.clientCertFile", "openbao.clientKeyFile"
    )
    cert = parse_config(with_value("auth", EXAMPLES["cert"]))
    assert cert.tls_client_certificate() == ClientCertificate(
        "/etc/openbao-kms/client.pem",
        "/etc/openbao-kms/client-key.pem",
        "auth.cert.certFile",  # start-up errors name the key the operator wrote
        "auth.cert.keyFile",
    )


@pytest.mark.parametrize("name", ["bao.example.com", "bao", "openbao-0.openbao.svc."])
def test_tls_server_name_accepts_dns_names(name: str) -> None:
    assert parse_config(with_value("openbao.tlsServerName", name)).openbao.tls_server_name == name


@pytest.mark.parametrize("name", ["bao example", "https://bao", "-bao", f"{MARKER}_x", ""])
def test_tls_server_name_refuses_other_text_without_echoing(name: str) -> None:
    message = refused(with_value("openbao.tlsServerName", name))
    assert "openbao.tlsServerName: must be a DNS host name" in message
    assert MARKER not in message
