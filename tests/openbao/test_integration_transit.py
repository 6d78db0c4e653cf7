"""TransitClient and Transport against a real OpenBao dev server (the ``bao`` binary).

One server for the module, always stopped. Tests that change key state use their own key so
they do not depend on the order they run in.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from _support import FakeClock
from _support.leaks import expect_error
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    InvalidCiphertext,
    OpenBaoPermissionDenied,
    OpenBaoRejected,
    OpenBaoUnauthenticated,
)
from bao_kms.openbao import KeyMetadata, TokenFileAuth, TransitClient, Transport, make_pool
from bao_kms.openbao.connections import ConnectionPool

pytestmark = pytest.mark.timeout(60)

AAD = base64.b64encode(b'{"aad_version":"v1","key_version":"1"}').decode()
OTHER_AAD = base64.b64encode(b'{"aad_version":"v1","key_version":"2"}').decode()
NAMESPACE = "team-kms"


@pytest.fixture(scope="module")
def bao() -> Iterator[EmbeddedOpenBao]:
    with EmbeddedOpenBao() as server:
        server.setup_transit()  # transit/kms, disable_upsert=true
        server.setup_transit("transit-upsert", "kms", disable_upsert=False)
        yield server


@pytest.fixture(scope="module")
def real_pool() -> Iterator[ConnectionPool]:
    pool = make_pool(ca_file=None)
    yield pool
    pool.clear()


@pytest.fixture
def write_token(tmp_path: Path) -> Callable[[str], Path]:
    def write(token: str) -> Path:
        path = tmp_path / f"token-{secrets.token_hex(4)}"
        path.write_text(token + "\n")
        path.chmod(0o600)  # the provider refuses credential files others can read
        return path

    return write


@pytest.fixture
def transport(
    bao: EmbeddedOpenBao, real_pool: ConnectionPool, write_token: Callable[[str], Path]
) -> Transport:
    return Transport([bao.address], TokenFileAuth(write_token(bao.root_token)), pool=real_pool)


def secrets_of(bao: EmbeddedOpenBao, *more: str) -> tuple[str, ...]:
    return (bao.root_token, "kms", "transit", *more)


def new_key(bao: EmbeddedOpenBao) -> str:
    name = "key-" + secrets.token_hex(4)
    bao.api("POST", f"transit/keys/{name}", {"type": "aes256-gcm96"})
    return name


def test_round_trip_with_aad_and_explicit_version(transport: Transport) -> None:
    client = TransitClient(transport, "transit", "kms")
    plaintext = os.urandom(32)
    ciphertext = client.encrypt(plaintext, 1, AAD)
    assert ciphertext.startswith(b"vault:v1:")
    assert client.decrypt(ciphertext, AAD) == plaintext


def test_explicit_versions_after_rotation(bao: EmbeddedOpenBao, transport: Transport) -> None:
    name = new_key(bao)
    bao.api("POST", f"transit/keys/{name}/rotate")
    client = TransitClient(transport, "transit", name)
    plaintext = os.urandom(32)
    old = client.encrypt(plaintext, 1, AAD)
    new = client.encrypt(plaintext, 2, AAD)
    assert old.startswith(b"vault:v1:") and new.startswith(b"vault:v2:")
    assert client.decrypt(old, AAD) == client.decrypt(new, AAD) == plaintext


def test_wrong_aad(bao: EmbeddedOpenBao, transport: Transport) -> None:
    client = TransitClient(transport, "transit", "kms")
    ciphertext = client.encrypt(os.urandom(32), 1, AAD)
    error = expect_error(
        CiphertextAuthenticationFailed,
        client.decrypt,
        ciphertext,
        OTHER_AAD,
        secrets=secrets_of(bao),
    )
    assert str(error) == "ciphertext failed authentication"
    expect_error(CiphertextAuthenticationFailed, client.decrypt, ciphertext, "")


def test_tampered_ciphertext(bao: EmbeddedOpenBao, transport: Transport) -> None:
    client = TransitClient(transport, "transit", "kms")
    ciphertext = client.encrypt(os.urandom(32), 1, AAD)
    prefix, payload = ciphertext[:9], bytearray(base64.b64decode(ciphertext[9:]))
    payload[20] ^= 0x01
    tampered = prefix + base64.b64encode(bytes(payload))
    expect_error(
        CiphertextAuthenticationFailed, client.decrypt, tampered, AAD, secrets=secrets_of(bao)
    )
    # Well-formed locally, refused by OpenBao's own parser:
    expect_error(InvalidCiphertext, client.decrypt, b"vault:v1:AAAA", AAD)  # too short
    expect_error(InvalidCiphertext, client.decrypt, b"vault:v9:" + ciphertext[9:], AAD)  # too new


def test_version_above_latest_is_rejected(bao: EmbeddedOpenBao, transport: Transport) -> None:
    client = TransitClient(transport, "transit", "kms")
    latest = client.read_key().latest_version
    error = expect_error(
        OpenBaoRejected, client.encrypt, os.urandom(32), latest + 1, AAD, secrets=secrets_of(bao)
    )
    assert "400" in str(error)


def assert_matches_server(metadata: KeyMetadata, reported: dict) -> None:
    assert metadata.type == reported["type"] == "aes256-gcm96"
    for name in (
        "derived",
        "exportable",
        "allow_plaintext_backup",
        "deletion_allowed",
        "soft_deleted",
        "latest_version",
        "min_decryption_version",
        "min_encryption_version",
        "min_available_version",
    ):
        assert getattr(metadata, name) == reported[name], name
    assert metadata.convergent_encryption == reported.get("convergent_encryption", False)
    assert dict(metadata.versions) == {int(v): t for v, t in reported["keys"].items()}


def test_read_key_matches_server_and_follows_rotation(
    bao: EmbeddedOpenBao, transport: Transport
) -> None:
    name = new_key(bao)
    client = TransitClient(transport, "transit", name)
    first = client.read_key()
    assert_matches_server(first, bao.api("GET", f"transit/keys/{name}")["data"])
    assert first.latest_version == 1 and list(first.versions) == [1]
    bao.api("POST", f"transit/keys/{name}/rotate")
    second = client.read_key()
    assert_matches_server(second, bao.api("GET", f"transit/keys/{name}")["data"])
    assert second.latest_version == 2 and list(second.versions) == [1, 2]
    assert second.versions[1] == first.versions[1]


def test_read_key_flags_of_the_safe_profile(transport: Transport) -> None:
    metadata = TransitClient(transport, "transit", "kms").read_key()
    assert (
        metadata.derived,
        metadata.convergent_encryption,
        metadata.exportable,
        metadata.allow_plaintext_backup,
        metadata.deletion_allowed,
        metadata.soft_deleted,
    ) == (False, False, False, False, False, False)


def test_read_key_of_a_derived_convergent_key(bao: EmbeddedOpenBao, transport: Transport) -> None:
    name = "derived-" + secrets.token_hex(4)
    bao.api(
        "POST",
        f"transit/keys/{name}",
        {"type": "aes256-gcm96", "derived": True, "convergent_encryption": True},
    )
    metadata = TransitClient(transport, "transit", name).read_key()
    assert metadata.derived and metadata.convergent_encryption


def test_trimmed_versions_are_not_listed(bao: EmbeddedOpenBao, transport: Transport) -> None:
    """OpenBao lists only versions >= min_decryption_version; older ones stop decrypting."""
    name = new_key(bao)
    client = TransitClient(transport, "transit", name)
    old = client.encrypt(os.urandom(32), 1, AAD)
    bao.api("POST", f"transit/keys/{name}/rotate")
    bao.api("POST", f"transit/keys/{name}/config", {"min_decryption_version": 2})
    metadata = client.read_key()
    assert (metadata.latest_version, metadata.min_decryption_version) == (2, 2)
    assert list(metadata.versions) == [2]
    expect_error(OpenBaoRejected, client.decrypt, old, AAD)


def test_read_keys_config(transport: Transport) -> None:
    assert TransitClient(transport, "transit", "kms").read_keys_config() is True
    assert TransitClient(transport, "transit-upsert", "kms").read_keys_config() is False


def test_missing_key_and_mount_are_rejected(bao: EmbeddedOpenBao, transport: Transport) -> None:
    missing_key = TransitClient(transport, "transit", "no-such-key")
    expect_error(OpenBaoRejected, missing_key.read_key, secrets=secrets_of(bao, "no-such-key"))
    expect_error(OpenBaoRejected, missing_key.encrypt, os.urandom(32), 1, AAD)
    missing_mount = TransitClient(transport, "no-such-mount", "kms")
    expect_error(
        OpenBaoRejected, missing_mount.read_keys_config, secrets=secrets_of(bao, "no-such-mount")
    )


def test_health_ok(transport: Transport) -> None:
    assert TransitClient(transport, "transit", "kms").health() == "ok"


def test_policy_without_decrypt_is_permission_denied(
    bao: EmbeddedOpenBao, real_pool: ConnectionPool, write_token: Callable[[str], Path]
) -> None:
    token = bao.create_token(
        'path "transit/encrypt/kms" { capabilities = ["update"] }\n'
        'path "transit/keys/kms" { capabilities = ["read"] }\n',
        policy_name="encrypt-only",
    )
    transport = Transport([bao.address], TokenFileAuth(write_token(token)), pool=real_pool)
    client = TransitClient(transport, "transit", "kms")
    ciphertext = client.encrypt(os.urandom(32), 1, AAD)
    assert client.read_key().latest_version >= 1
    error = expect_error(
        OpenBaoPermissionDenied, client.decrypt, ciphertext, AAD, secrets=secrets_of(bao, token)
    )
    assert "403" in str(error)
    expect_error(OpenBaoPermissionDenied, client.read_keys_config, secrets=secrets_of(bao, token))


def test_invalid_token_is_403_and_a_rotated_file_recovers(
    bao: EmbeddedOpenBao, real_pool: ConnectionPool, write_token: Callable[[str], Path]
) -> None:
    bogus = "s.not-a-real-token-" + secrets.token_hex(8)
    path = write_token(bogus)
    # A clock that never moves: only the 403-triggered refresh can notice the new file.
    auth = TokenFileAuth(path, clock=FakeClock())
    client = TransitClient(Transport([bao.address], auth, pool=real_pool), "transit", "kms")
    # OpenBao answers an unknown token with 403 "permission denied", not 401; lookup-self
    # refuses it too, so the provider reports the token, not the policy.
    error = expect_error(OpenBaoUnauthenticated, client.read_key, secrets=secrets_of(bao, bogus))
    assert error.reason == "openbao_token_rejected" and error.error_class == "token_rejected"
    path.write_text(bao.root_token)
    assert client.read_key().latest_version >= 1
    assert auth.token() == bao.root_token


def test_namespace(
    bao: EmbeddedOpenBao, real_pool: ConnectionPool, write_token: Callable[[str], Path]
) -> None:
    bao.api("POST", f"sys/namespaces/{NAMESPACE}", {})
    auth = TokenFileAuth(write_token(bao.root_token))
    setup = Transport([bao.address], auth, pool=real_pool, namespace=NAMESPACE)
    setup.request("POST", "sys/mounts/transit", b'{"type":"transit"}')
    setup.request("POST", "transit/keys/kms", b'{"type":"aes256-gcm96"}')

    client = TransitClient(setup, "transit", "kms")
    plaintext = os.urandom(32)
    assert client.decrypt(client.encrypt(plaintext, 1, AAD), AAD) == plaintext
    # sys/health exists only in the root namespace; the client must still report health.
    assert client.health() == "ok"
    root_only = TransitClient(
        Transport([bao.address], auth, pool=real_pool, namespace="no-such-namespace"),
        "transit",
        "kms",
    )
    expect_error(OpenBaoRejected, root_only.read_key, secrets=secrets_of(bao, "no-such-namespace"))
