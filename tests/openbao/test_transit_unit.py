"""TransitClient against the fake server: paths, bodies, strict parsing, 400 classification.

Response bodies are copies of what OpenBao 2.7 really answered (see the integration tests,
which check the same behaviour against the real server).
"""

from __future__ import annotations

import base64
import copy
import time
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from _support.fake_openbao import FakeBao, RefusingAddress, Reply, errors_body
from _support.leaks import KEY, MOUNT, SERVER_TEXT, TOKEN, expect_error
from bao_kms import _codec
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    DeadlineExceeded,
    InvalidCiphertext,
    OpenBaoBadResponse,
    OpenBaoRejected,
    OpenBaoUnavailable,
)
from bao_kms.openbao import KeyMetadata, TransitClient, Transport

pytestmark = pytest.mark.timeout(30)

AAD = base64.b64encode(b'{"aad_version":"v1"}').decode()
PLAINTEXT = bytes(range(32))
CIPHERTEXT = b"vault:v2:SpZrMRIOc9FFzbVgSo4WUJOyLiKvukM3sswvhAhxHG9msLt5rug+7ejgTTWDQBoeWXQJD0yW"

# GET transit/keys/kms after one rotation, as OpenBao 2.7.2 answered it
KEY_RESPONSE: dict[str, Any] = {
    "request_id": "95964105-9914-d1bd-a340-7479e09725ad",
    "lease_id": "",
    "renewable": False,
    "lease_duration": 0,
    "data": {
        "allow_plaintext_backup": False,
        "auto_rotate_period": 0,
        "deletion_allowed": False,
        "derived": False,
        "exportable": False,
        "imported_key": False,
        "keys": {"1": 1795753413, "2": 1795753499},
        "latest_version": 2,
        "min_available_version": 0,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "name": KEY,
        "soft_deleted": False,
        "supports_decryption": True,
        "supports_derivation": True,
        "supports_encryption": True,
        "supports_signing": False,
        "type": "aes256-gcm96",
    },
    "wrap_info": None,
    "warnings": None,
    "auth": None,
}

BOOL_FIELDS = ["derived", "exportable", "allow_plaintext_backup", "deletion_allowed"]
INT_FIELDS = [
    "latest_version",
    "min_decryption_version",
    "min_encryption_version",
    "min_available_version",
]


def data_response(data: dict[str, Any]) -> dict[str, Any]:
    return {"request_id": "x", "data": data, "warnings": None}


@pytest.fixture
def client(fake: FakeBao, make_transport: Callable[..., Transport]) -> TransitClient:
    return TransitClient(make_transport(fake.address), MOUNT, KEY)


# --- encrypt ---------------------------------------------------------------------------------


def test_encrypt_sends_codec_body_and_returns_ciphertext(
    fake: FakeBao, client: TransitClient
) -> None:
    fake.reply(Reply(200, data_response({"ciphertext": CIPHERTEXT.decode(), "key_version": 2})))
    assert client.encrypt(PLAINTEXT, 2, AAD) == CIPHERTEXT
    (seen,) = fake.requests
    assert (seen.method, seen.path) == ("POST", f"/v1/{MOUNT}/encrypt/{KEY}")
    assert seen.body == _codec.encrypt_request_body(PLAINTEXT, 2, AAD)
    assert orjson.loads(seen.body)["key_version"] == 2


def test_encrypt_with_another_version_is_a_bad_response(
    fake: FakeBao, client: TransitClient
) -> None:
    fake.reply(Reply(200, data_response({"ciphertext": CIPHERTEXT.decode(), "key_version": 2})))
    error = expect_error(OpenBaoBadResponse, client.encrypt, PLAINTEXT, 1, AAD)
    assert "version 2" in str(error) and "1" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"[]",
        orjson.dumps({"data": None}),
        orjson.dumps(data_response({"key_version": 2})),
        orjson.dumps(data_response({"ciphertext": CIPHERTEXT.decode()})),
        orjson.dumps(data_response({"ciphertext": "vault:v1:AAAA", "key_version": 2})),
        orjson.dumps(data_response({"ciphertext": CIPHERTEXT.decode(), "key_version": "2"})),
    ],
)
def test_encrypt_malformed_answers(body: bytes, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, body))
    expect_error(OpenBaoBadResponse, client.encrypt, PLAINTEXT, 2, AAD)


def test_encrypt_400_is_rejected(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(
        Reply(400, errors_body("requested version for encryption is higher than the latest"))
    )
    expect_error(OpenBaoRejected, client.encrypt, PLAINTEXT, 9, AAD)


# --- decrypt ---------------------------------------------------------------------------------


def test_decrypt_sends_codec_body_and_returns_plaintext(
    fake: FakeBao, client: TransitClient
) -> None:
    encoded = base64.b64encode(PLAINTEXT).decode()
    fake.reply(Reply(200, data_response({"plaintext": encoded})))
    assert client.decrypt(CIPHERTEXT, AAD) == PLAINTEXT
    (seen,) = fake.requests
    assert (seen.method, seen.path) == ("POST", f"/v1/{MOUNT}/decrypt/{KEY}")
    assert seen.body == _codec.decrypt_request_body(CIPHERTEXT, AAD)


@pytest.mark.parametrize(
    ("server_error", "cls"),
    [
        ("cipher: message authentication failed", CiphertextAuthenticationFailed),
        ("invalid ciphertext: could not decode base64", InvalidCiphertext),
        ("invalid ciphertext length", InvalidCiphertext),
        ("invalid ciphertext: no prefix", InvalidCiphertext),
        ("invalid ciphertext: version is too new", InvalidCiphertext),
        ("ciphertext or signature version is disallowed by policy (too old)", OpenBaoRejected),
        ("encryption key not found", OpenBaoRejected),
        (SERVER_TEXT, OpenBaoRejected),
    ],
)
def test_decrypt_400_classification(
    server_error: str, cls: type, fake: FakeBao, client: TransitClient
) -> None:
    fake.reply(Reply(400, errors_body(server_error)))
    error = expect_error(
        cls, client.decrypt, CIPHERTEXT, AAD, secrets=(TOKEN, KEY, MOUNT, server_error)
    )
    if cls is CiphertextAuthenticationFailed:
        assert str(error) == "ciphertext failed authentication"


@pytest.mark.parametrize("body", [b"cipher: message authentication failed", b"", b"{}"])
def test_decrypt_400_non_json_is_rejected(
    body: bytes, fake: FakeBao, client: TransitClient
) -> None:
    fake.reply(Reply(400, body))
    expect_error(OpenBaoRejected, client.decrypt, CIPHERTEXT, AAD)


@pytest.mark.parametrize(
    "ciphertext", [b"", b"vault:v1:", b"vault:v0:AAAA", "vault:v1:ÄÄÄÄ".encode()]
)
def test_decrypt_refuses_malformed_ciphertext_without_a_request(
    ciphertext: bytes, fake: FakeBao, client: TransitClient
) -> None:
    expect_error(InvalidCiphertext, client.decrypt, ciphertext, AAD)
    assert fake.requests == []


@pytest.mark.parametrize(
    "data", [{}, {"plaintext": ""}, {"plaintext": "not base64!"}, {"plaintext": 5}]
)
def test_decrypt_malformed_answers(data: dict, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, data_response(data)))
    expect_error(OpenBaoBadResponse, client.decrypt, CIPHERTEXT, AAD)


def test_decrypt_deadline_passed(fake: FakeBao, client: TransitClient) -> None:
    expect_error(DeadlineExceeded, client.decrypt, CIPHERTEXT, AAD, deadline=time.monotonic() - 1)
    assert fake.requests == []


# --- read_key ----------------------------------------------------------------------------------


def test_read_key(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, KEY_RESPONSE))
    metadata = client.read_key()
    assert metadata == KeyMetadata(
        type="aes256-gcm96",
        derived=False,
        convergent_encryption=False,
        exportable=False,
        allow_plaintext_backup=False,
        deletion_allowed=False,
        soft_deleted=False,
        latest_version=2,
        min_decryption_version=1,
        min_encryption_version=0,
        min_available_version=0,
        versions={1: 1795753413, 2: 1795753499},
    )
    assert fake.requests[0].path == f"/v1/{MOUNT}/keys/{KEY}"
    assert fake.requests[0].method == "GET"
    with pytest.raises(TypeError):
        metadata.versions[3] = 0  # type: ignore[index]


def with_data(**changes: Any) -> dict[str, Any]:
    document = copy.deepcopy(KEY_RESPONSE)
    for name, value in changes.items():
        if value is _ABSENT:
            del document["data"][name]
        else:
            document["data"][name] = value
    return document


_ABSENT = object()


def test_read_key_optional_flags(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, with_data(soft_deleted=_ABSENT)))
    assert client.read_key().soft_deleted is False
    fake.reply(Reply(200, with_data(derived=True, convergent_encryption=True, soft_deleted=True)))
    metadata = client.read_key()
    assert (metadata.derived, metadata.convergent_encryption, metadata.soft_deleted) == (
        True,
        True,
        True,
    )


SECRET_VALUE = "TOPSECRET-value"

BAD_FIELDS = (
    [(name, _ABSENT) for name in ["type", *BOOL_FIELDS, *INT_FIELDS, "keys"]]
    + [(name, bad) for name in BOOL_FIELDS for bad in (1, "false", None, SECRET_VALUE)]
    + [(name, bad) for name in ("convergent_encryption", "soft_deleted") for bad in (0, None)]
    + [(name, bad) for name in INT_FIELDS for bad in (True, 1.0, "2", -1, None, SECRET_VALUE)]
    + [("type", bad) for bad in (1, None, ["aes256-gcm96"])]
    + [
        ("keys", bad)
        for bad in (
            [],
            None,
            {"1": True},
            {"1": "1795753413"},
            {"1": 1.5},
            {"1": -5},
            {"1": {"creation_time": "2026-11-27T04:23:38Z", "public_key": SECRET_VALUE}},
            {"01": 1},
            {"0": 1},
            {"v1": 1},
            {SECRET_VALUE: 1},
        )
    ]
)


@pytest.mark.parametrize(("field", "value"), BAD_FIELDS)
def test_read_key_is_strict(field: str, value: Any, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, with_data(**{field: value})))
    error = expect_error(
        OpenBaoBadResponse,
        client.read_key,
        secrets=(TOKEN, KEY, MOUNT, SECRET_VALUE, "1795753413"),
    )
    assert field in str(error)


@pytest.mark.parametrize("body", [b"", b"null", b"[]", b'{"data":[]}', b'{"nodata":{}}'])
def test_read_key_without_data(body: bytes, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, body))
    expect_error(OpenBaoBadResponse, client.read_key)


def test_read_key_missing_key_is_rejected(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(404, errors_body()))  # what OpenBao answers for a key that does not exist
    expect_error(OpenBaoRejected, client.read_key)


# --- read_keys_config --------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_read_keys_config(value: bool, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, data_response({"disable_upsert": value})))
    assert client.read_keys_config() is value
    assert fake.requests[0].path == f"/v1/{MOUNT}/config/keys"


@pytest.mark.parametrize("data", [{}, {"disable_upsert": 1}, {"disable_upsert": "true"}])
def test_read_keys_config_is_strict(data: dict, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, data_response(data)))
    error = expect_error(OpenBaoBadResponse, client.read_keys_config)
    assert "disable_upsert" in str(error)


# --- health ----------------------------------------------------------------------------------


def health_body(initialized: bool, sealed: bool, standby: bool) -> dict[str, Any]:
    return {
        "initialized": initialized,
        "sealed": sealed,
        "standby": standby,
        "replication_performance_mode": "disabled",
        "version": "2.7.2",
    }


@pytest.mark.parametrize(
    ("status", "body", "state"),
    [
        (200, health_body(True, False, False), "ok"),
        (200, health_body(True, False, True), "standby"),  # standbyok=true
        (429, health_body(True, False, True), "standby"),
        (473, health_body(True, False, True), "standby"),
        (503, health_body(True, True, True), "sealed"),  # sealed servers say standby too
        (501, health_body(False, True, True), "uninitialized"),
    ],
)
def test_health_states(
    status: int,
    body: dict,
    state: str,
    fake: FakeBao,
    make_transport: Callable[..., Transport],
) -> None:
    fake.reply(Reply(status, body))
    client = TransitClient(make_transport(fake.address, namespace="team-a"), MOUNT, KEY)
    assert client.health() == state
    (seen,) = fake.requests
    assert seen.path == "/v1/sys/health?standbyok=true&perfstandbyok=true"
    # OpenBao answers 400 for sys/health inside a namespace; the token is not needed.
    assert "X-Vault-Namespace" not in seen.headers
    assert "X-Vault-Token" not in seen.headers


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[]", {"initialized": True, "sealed": False}, health_body(1, 0, 0)],  # type: ignore[arg-type]
)
def test_health_malformed(body: Any, fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, body))
    expect_error(OpenBaoBadResponse, client.health)


def test_health_other_statuses_raise(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(500, errors_body(SERVER_TEXT)))
    expect_error(OpenBaoUnavailable, client.health)
    fake.reply(Reply(404, errors_body(SERVER_TEXT)))
    expect_error(OpenBaoRejected, client.health)


def test_health_connection_refused(
    refusing: RefusingAddress, make_transport: Callable[..., Transport]
) -> None:
    client = TransitClient(make_transport(refusing.address), MOUNT, KEY)
    expect_error(OpenBaoUnavailable, client.health)


def test_paths_are_quoted(fake: FakeBao, make_transport: Callable[..., Transport]) -> None:
    fake.reply(Reply(200, data_response({"disable_upsert": True})))
    client = TransitClient(make_transport(fake.address), "/team/transit/", "a key?")
    client.read_keys_config()
    fake.reply(Reply(200, KEY_RESPONSE))
    client.read_key()
    assert [seen.path for seen in fake.requests] == [
        "/v1/team/transit/config/keys",
        "/v1/team/transit/keys/a%20key%3F",
    ]
