"""The provider against OpenBao over HTTPS: verified with the configured CA, refused without."""

from __future__ import annotations

import os

import pytest

from _support import wait_for
from _support.openbao_servers import TlsDevOpenBao

pytestmark = pytest.mark.openbao


@pytest.fixture(scope="module")
def tls_openbao():
    with TlsDevOpenBao() as server:
        server.setup_transit()
        yield server


def test_round_trip_over_verified_tls(start_provider, tls_openbao):
    assert tls_openbao.address.startswith("https://127.0.0.1:")
    running = start_provider(server=tls_openbao, ca_file=tls_openbao.ca_file)
    seed = os.urandom(32)
    encrypted = running.client.encrypt(seed)
    decrypted = running.client.decrypt(
        encrypted.ciphertext, encrypted.key_id, encrypted.annotations
    )
    assert decrypted.plaintext == seed


def test_unknown_ca_is_refused(start_provider, tls_openbao):
    """Without the dev CA the certificate cannot be verified: never healthy, never bypassed."""
    running = start_provider(server=tls_openbao, wait=False)
    status = wait_for(lambda: (s := running.client.status()).healthz != "not_probed_yet" and s)
    assert status.healthz == "openbao_tls_untrusted"
    assert status.key_id == ""
