"""README's "OpenBao answers" table, one test per row, against a real ``bao`` wherever OpenBao
can be made to give that answer.

Each test produces the answer, then checks every column through the real code: the error class
and ``error_class``, the gRPC code, the Status reason a probe reports, the breaker effect (on a
breaker that already counted one failure, threshold 2), and the retry (a second address that
answers 200 is used for "next address" rows only). Rows OpenBao does not produce on these paths
(5xx other than sealed, 401, 412, 3xx, a malformed 2xx) run against the scripted server and are
marked ``fake_server`` in their names.
"""

from __future__ import annotations

import base64
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support.answer_rows import AAD, CODE, FAKE_TOKEN, SEED, Harness
from _support.fake_openbao import FakeBao, RefusingAddress, Reply, errors_body
from _support.openbao_servers import RaftOpenBao, TlsDevOpenBao, raft_with_transit
from bao_kms.errors import KmsError, grpc_status
from bao_kms.manifests import openbao_policy
from bao_kms.openbao import TransitClient
from bao_kms.openbao.answers import Answer, answer_of
from bao_kms.openbao.breaker import OPEN, CircuitBreaker

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    harness = Harness(tmp_path)
    yield harness
    harness.close()


@pytest.fixture
def second() -> Iterator[FakeBao]:
    with FakeBao() as fake:
        yield fake


@pytest.fixture(scope="module")
def raft() -> Iterator[RaftOpenBao]:
    """A restartable, sealable real server of this module's own."""
    with raft_with_transit() as server:
        yield server


@pytest.fixture(scope="module")
def tls_bao() -> Iterator[TlsDevOpenBao]:
    with TlsDevOpenBao() as server:
        server.setup_transit()
        yield server


@pytest.fixture
def mount(fresh_key: Callable[..., tuple[str, str]]) -> str:
    return fresh_key()[0]


def policy_token(openbao: Any, mount: str, *, decrypt: bool = True) -> str:
    policy = openbao_policy(mount, "kms")
    if not decrypt:
        policy = "path ".join(b for b in policy.split("path ") if f"{mount}/decrypt/" not in b)
    return openbao.create_token(policy, f"kms-answers-{mount}-{decrypt}")


def encrypt(client: TransitClient) -> bytes:
    return client.encrypt(SEED, 1, AAD)


def read_key(client: TransitClient) -> Any:
    return client.read_key()


# --- no answer at all -------------------------------------------------------------------------


def test_connection_failed(harness, second, raft):
    raft.stop()
    try:
        harness.check(
            Answer.CONNECTION_FAILED, read_key, raft.address, token=raft.root_token,
            retry_through=second,
        )  # fmt: skip
    finally:
        raft.start()


def test_timeout(harness, second, raft):
    assert raft.pid is not None
    os.kill(raft.pid, signal.SIGSTOP)  # a hung server: connections queue, nothing answers
    try:
        harness.check(
            Answer.TIMEOUT, read_key, raft.address, token=raft.root_token, timeout=0.5,
            retry_through=second,
        )  # fmt: skip
    finally:
        os.kill(raft.pid, signal.SIGCONT)


def test_tls_failed_https_to_a_plain_http_server(harness, second, openbao):
    address = openbao.address.replace("http://", "https://")
    harness.check(
        Answer.TLS_FAILED, read_key, address, token=openbao.root_token, retry_through=second
    )


def test_tls_untrusted_certificate(harness, second, tls_bao):
    harness.check(
        Answer.TLS_UNTRUSTED, read_key, tls_bao.address, token=tls_bao.root_token,
        retry_through=second,
    )  # fmt: skip


# --- OpenBao cannot serve ----------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 504, 503])
def test_server_error_fake_server(harness, second, status):
    with FakeBao() as fake:
        fake.reply(Reply(status, errors_body("local node not active")))
        harness.check(
            Answer.SERVER_ERROR, read_key, fake.address, token=FAKE_TOKEN, retry_through=second
        )


def test_sealed(harness, second, raft):
    raft.seal()
    try:
        harness.check(
            Answer.SEALED, read_key, raft.address, token=raft.root_token, retry_through=second
        )
    finally:
        raft.unseal()


# --- OpenBao answered --------------------------------------------------------------------------


def test_rate_limited(harness, second, openbao, mount):
    openbao.api("POST", "sys/quotas/rate-limit/kms-answers", {"rate": 1, "path": f"{mount}/"})
    try:
        client = harness.client(openbao.address, token=openbao.root_token, mount=mount)
        for _ in range(3):  # use up the quota's one request per second
            try:
                client.read_key()
            except KmsError:
                break
        harness.check(
            Answer.RATE_LIMITED, read_key, openbao.address, token=openbao.root_token,
            mount=mount, retry_through=second,
        )  # fmt: skip
    finally:
        openbao.api("DELETE", "sys/quotas/rate-limit/kms-answers")


def test_precondition_failed_fake_server(harness, second):
    with FakeBao() as fake:
        fake.reply(Reply(412, errors_body("required index state not present")))
        harness.check(
            Answer.PRECONDITION_FAILED,
            read_key,
            fake.address,
            token=FAKE_TOKEN,
            retry_through=second,
        )


def test_redirect_fake_server(harness, second):
    with FakeBao() as fake:
        fake.reply(Reply(307, b"", headers={"Location": "http://127.0.0.1:1/v1/transit/keys/kms"}))
        harness.check(
            Answer.REDIRECT, read_key, fake.address, token=FAKE_TOKEN, retry_through=second
        )


def test_ciphertext_unauthentic(harness, second, openbao):
    ciphertext = harness.client(openbao.address, token=openbao.root_token).encrypt(SEED, 1, AAD)
    other_aad = base64.b64encode(b'{"aad_version":"v1","other":1}').decode()
    harness.check(
        Answer.CIPHERTEXT_UNAUTHENTIC, lambda c: c.decrypt(ciphertext, other_aad),
        openbao.address, token=openbao.root_token, retry_through=second,
    )  # fmt: skip


def test_ciphertext_malformed(harness, second, openbao):
    harness.check(
        Answer.CIPHERTEXT_MALFORMED, lambda c: c.decrypt(b"vault:v1:AAAA", AAD),
        openbao.address, token=openbao.root_token, retry_through=second,
    )  # fmt: skip


def test_key_version_rejected(harness, second, openbao, fresh_key):
    mount, key = fresh_key()
    openbao.api("POST", f"{mount}/keys/{key}/rotate")
    openbao.api("POST", f"{mount}/keys/{key}/config", {"min_encryption_version": 2})
    harness.check(
        Answer.KEY_VERSION_REJECTED, encrypt, openbao.address, token=openbao.root_token,
        mount=mount, retry_through=second,
    )  # fmt: skip


def test_not_found_404_on_read(harness, second, openbao):
    token = openbao.create_token(openbao_policy("transit", "no-such-key"), "kms-answers-nf")
    harness.check(
        Answer.NOT_FOUND, read_key, openbao.address, token=token, key="no-such-key",
        retry_through=second,
    )  # fmt: skip


def test_not_found_400_on_encrypt(harness, second, openbao):
    # With the provider's policy OpenBao answers this 403 (encrypting to a key that does not
    # exist needs "create"); a token that may create gets the 400 "encryption key not found".
    harness.check(
        Answer.NOT_FOUND, encrypt, openbao.address, token=openbao.root_token, key="no-such-key",
        retry_through=second,
    )  # fmt: skip


def test_bad_request_http_to_a_tls_port(harness, second, tls_bao):
    address = tls_bao.address.replace("https://", "http://")
    harness.check(
        Answer.BAD_REQUEST, read_key, address, token=tls_bao.root_token, retry_through=second
    )


def test_unauthenticated_401_fake_server(harness, second):
    with FakeBao() as fake:
        fake.reply(Reply(401, errors_body("missing client token")))
        harness.check(
            Answer.UNAUTHENTICATED, read_key, fake.address, token=FAKE_TOKEN, retry_through=second
        )


def test_token_rejected_revoked(harness, second, openbao, mount):
    token = policy_token(openbao, mount)
    openbao.api("POST", "auth/token/revoke", {"token": token})
    error = harness.check(
        Answer.TOKEN_REJECTED, read_key, openbao.address, token=token, mount=mount,
        retry_through=second,
    )  # fmt: skip
    assert "403" in str(error)


def test_permission_denied_policy(harness, second, openbao, mount):
    token = policy_token(openbao, mount, decrypt=False)
    ciphertext = harness.client(openbao.address, token=token, mount=mount).encrypt(SEED, 1, AAD)
    harness.check(
        Answer.PERMISSION_DENIED, lambda c: c.decrypt(ciphertext, AAD), openbao.address,
        token=token, mount=mount, retry_through=second,
    )  # fmt: skip


def test_bad_response_fake_server(harness, second):
    with FakeBao() as fake:
        fake.reply(Reply(200, {"data": {"type": 7}}))
        harness.check(Answer.BAD_RESPONSE, read_key, fake.address, token=FAKE_TOKEN)


# --- nothing decided by OpenBao ----------------------------------------------------------------


def test_no_token(harness, second, openbao):
    harness.check(Answer.NO_TOKEN, read_key, openbao.address, token="", retry_through=second)
    assert second.requests == []  # nothing was sent anywhere


def test_deadline(harness, raft):
    assert raft.pid is not None
    os.kill(raft.pid, signal.SIGSTOP)
    try:
        harness.check(
            Answer.DEADLINE,
            lambda c: c.read_key(deadline=c.transport._clock() + 0.3),
            raft.address,
            token=raft.root_token,
            timeout=5.0,
        )
    finally:
        os.kill(raft.pid, signal.SIGCONT)


def test_circuit_open(harness, openbao):
    with RefusingAddress() as dead:
        breaker = CircuitBreaker(1, 60.0)
        client = harness.client(dead.address, token=openbao.root_token, breaker=breaker)
        with pytest.raises(KmsError):
            client.read_key()  # connection refused: opens the breaker (threshold 1)
        with pytest.raises(KmsError) as info:
            client.read_key()
        assert answer_of(info.value) is Answer.CIRCUIT_OPEN
        assert grpc_status(info.value)[0] is CODE[Answer.CIRCUIT_OPEN]
        assert breaker.state == OPEN


def test_every_row_has_a_test():
    tested = {name.removeprefix("test_") for name in globals() if name.startswith("test_")}
    for answer in Answer:
        assert any(name.startswith(answer.value) for name in tested), answer
