"""Real OpenBao outages: TLS trust, a sealed server, a stopped and restarted one.

The same Transport (and pool) is used across each outage: the client must recover on its own
once the server is back, without being rebuilt.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _support.fake_openbao import RefusingAddress
from _support.leaks import expect_error
from _support.openbao_servers import RaftOpenBao, TlsDevOpenBao
from bao_kms.errors import (
    OpenBaoRejected,
    OpenBaoSealed,
    OpenBaoTlsUntrusted,
    OpenBaoUnavailable,
)
from bao_kms.openbao import TokenFileAuth, TransitClient, Transport, make_pool
from bao_kms.openbao.breaker import CircuitBreaker, CircuitOpen

pytestmark = pytest.mark.timeout(60)

AAD = base64.b64encode(b'{"aad_version":"v1"}').decode()


def token_file(directory: Path, token: str) -> Path:
    path = directory / "token"
    path.write_text(token)
    path.chmod(0o600)  # the provider refuses credential files others can read
    return path


# --- TLS -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_bao() -> Iterator[TlsDevOpenBao]:
    with TlsDevOpenBao() as server:
        server.setup_transit()
        yield server


def test_tls_with_the_ca_file(tls_bao: TlsDevOpenBao, tmp_path: Path) -> None:
    assert tls_bao.address.startswith("https://") and tls_bao.ca_file is not None
    pool = make_pool(ca_file=tls_bao.ca_file)
    try:
        auth = TokenFileAuth(token_file(tmp_path, tls_bao.root_token))
        client = TransitClient(Transport([tls_bao.address], auth, pool=pool), "transit", "kms")
        plaintext = os.urandom(32)
        assert client.decrypt(client.encrypt(plaintext, 1, AAD), AAD) == plaintext
        assert client.health() == "ok"
    finally:
        pool.clear()


def test_tls_without_the_ca_file_fails(tls_bao: TlsDevOpenBao, tmp_path: Path) -> None:
    pool = make_pool(ca_file=None)  # system trust does not know the dev CA
    try:
        auth = TokenFileAuth(token_file(tmp_path, tls_bao.root_token))
        client = TransitClient(Transport([tls_bao.address], auth, pool=pool), "transit", "kms")
        error = expect_error(
            OpenBaoTlsUntrusted, client.read_key, secrets=(tls_bao.root_token, "kms", "transit")
        )
        assert "TLS" in str(error)
        expect_error(OpenBaoTlsUntrusted, client.health)
    finally:
        pool.clear()


def test_plain_http_to_the_tls_port(tls_bao: TlsDevOpenBao, tmp_path: Path) -> None:
    # Go answers a plain-HTTP request on a TLS port with a non-JSON 400.
    pool = make_pool(ca_file=None)
    try:
        auth = TokenFileAuth(token_file(tmp_path, tls_bao.root_token))
        address = tls_bao.address.replace("https://", "http://")
        client = TransitClient(Transport([address], auth, pool=pool), "transit", "kms")
        expect_error(OpenBaoRejected, client.read_key)
    finally:
        pool.clear()


# --- raft: sealed, stopped, restarted --------------------------------------------------------


@pytest.fixture(scope="module")
def raft_bao() -> Iterator[RaftOpenBao]:
    with RaftOpenBao() as server:
        server.setup_transit()
        yield server


@pytest.fixture(scope="module")
def raft_client(
    raft_bao: RaftOpenBao, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TransitClient]:
    pool = make_pool(ca_file=None)
    auth = TokenFileAuth(token_file(tmp_path_factory.mktemp("raft-token"), raft_bao.root_token))
    # These tests classify each failure, so the breaker must not turn the later ones into
    # fail-fast answers; test_breaker_* below covers the breaker against this server.
    never_trips = CircuitBreaker(threshold=1_000_000)
    yield TransitClient(
        Transport([raft_bao.address], auth, pool=pool, timeout=2.0, breaker=never_trips),
        "transit",
        "kms",
    )
    pool.clear()


def secrets_of(bao: RaftOpenBao) -> tuple[str, ...]:
    return (bao.root_token, "kms", "transit")


def test_sealed(raft_bao: RaftOpenBao, raft_client: TransitClient) -> None:
    plaintext = os.urandom(32)
    ciphertext = raft_client.encrypt(plaintext, 1, AAD)
    raft_bao.seal()
    try:
        error = expect_error(
            OpenBaoSealed, raft_client.decrypt, ciphertext, AAD, secrets=secrets_of(raft_bao)
        )
        assert "503" in str(error)
        expect_error(OpenBaoSealed, raft_client.encrypt, plaintext, 1, AAD)
        expect_error(OpenBaoSealed, raft_client.read_key)
        assert raft_client.health() == "sealed"
    finally:
        raft_bao.unseal()
    assert raft_client.decrypt(ciphertext, AAD) == plaintext
    assert raft_client.health() == "ok"


def test_stopped_then_restarted(raft_bao: RaftOpenBao, raft_client: TransitClient) -> None:
    plaintext = os.urandom(32)
    ciphertext = raft_client.encrypt(plaintext, 1, AAD)
    raft_bao.stop()
    try:
        error = expect_error(
            OpenBaoUnavailable, raft_client.decrypt, ciphertext, AAD, secrets=secrets_of(raft_bao)
        )
        assert "connect" in str(error)
        expect_error(OpenBaoUnavailable, raft_client.health)
    finally:
        raft_bao.start()  # same port and storage; unsealed again by the helper
    assert raft_client.decrypt(ciphertext, AAD) == plaintext
    assert raft_client.encrypt(plaintext, 1, AAD).startswith(b"vault:v1:")
    assert raft_client.health() == "ok"


def test_breaker_fails_fast_while_openbao_is_down_then_recovers(
    raft_bao: RaftOpenBao, tmp_path: Path
) -> None:
    pool = make_pool(ca_file=None)
    breaker = CircuitBreaker(threshold=3, open_for=0.5)
    auth = TokenFileAuth(token_file(tmp_path, raft_bao.root_token))
    client = TransitClient(
        Transport([raft_bao.address], auth, pool=pool, timeout=2.0, breaker=breaker),
        "transit",
        "kms",
    )
    plaintext = os.urandom(32)
    ciphertext = client.encrypt(plaintext, 1, AAD)
    raft_bao.stop()
    try:
        for _ in range(3):
            expect_error(OpenBaoUnavailable, client.decrypt, ciphertext, AAD)
        assert breaker.state == "open"
        expect_error(CircuitOpen, client.decrypt, ciphertext, AAD)
    finally:
        raft_bao.start()
    time.sleep(0.6)
    assert client.decrypt(ciphertext, AAD) == plaintext  # the trial succeeds and closes it
    assert breaker.state == "closed"
    pool.clear()


def test_failover_from_a_dead_address_to_the_real_server(
    raft_bao: RaftOpenBao, tmp_path: Path
) -> None:
    pool = make_pool(ca_file=None)
    try:
        with RefusingAddress() as dead:
            auth = TokenFileAuth(token_file(tmp_path, raft_bao.root_token))
            transport = Transport([dead.address, raft_bao.address], auth, pool=pool)
            client = TransitClient(transport, "transit", "kms")
            plaintext = os.urandom(32)
            assert client.decrypt(client.encrypt(plaintext, 1, AAD), AAD) == plaintext
            assert transport.preferred_address == raft_bao.address
    finally:
        pool.clear()
