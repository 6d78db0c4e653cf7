"""TLS to the real ``bao`` with certificates we make: a wrong CA, an expired or not-yet-valid
server certificate, a redirect, a CA file without a certificate. Each is a clear error (the
message says what to fix) and a Status reason; nothing is ever sent unverified."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from _support import provider_document
from _support.fake_openbao import FakeBao, Reply
from _support.leaks import expect_error
from _support.openbao_tls import TlsOpenBao
from _support.pki import TestPki, write_private
from _support.provider_load import LoadedProvider
from bao_kms.errors import ConfigError, OpenBaoRedirected, OpenBaoTlsUntrusted
from bao_kms.openbao import make_pool

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPki:
    return TestPki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def bao(pki: TestPki) -> Iterator[TlsOpenBao]:
    server = TlsOpenBao(pki)
    with server:
        server.setup_transit()
        yield server


@pytest.fixture
def start(bao: TlsOpenBao, socket_dir: Path) -> Iterator[Callable[..., LoadedProvider]]:
    """Start a provider on *server* (default: the TLS one) with a token file, not waiting."""
    running: list[LoadedProvider] = []

    def start(server: Any = None, **openbao: Any) -> LoadedProvider:
        server = server or bao
        token = write_private(socket_dir / f"token-{len(running)}", bao.root_token)
        document = provider_document(server, token, socket_dir / f"kms-{len(running)}.sock")
        document["openbao"].update(openbao)
        provider = LoadedProvider(document).start()
        running.append(provider)
        return provider

    yield start
    for provider in running:
        provider.stop()


def test_the_right_ca_verifies(bao: TlsOpenBao, start: Callable[..., LoadedProvider]) -> None:
    start(caFile=str(bao.ca_file)).wait_healthz("ok")


def test_a_wrong_ca_is_refused_and_says_so(
    start: Callable[..., LoadedProvider], tmp_path: Path
) -> None:
    other = TestPki(tmp_path / "other", "other-ca")
    provider = start(caFile=str(other.ca_file))
    provider.wait_healthz("openbao_tls_untrusted")
    error = expect_error(OpenBaoTlsUntrusted, provider.provider.transit.read_key)
    assert str(error) == "OpenBao's TLS certificate is not signed by a CA in openbao.caFile"


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({"expired": True}, "OpenBao's TLS certificate (or a CA above it) has expired"),
        ({"not_yet_valid": True}, "OpenBao's TLS certificate (or a CA above it) is not valid yet"),
    ],
)
def test_a_server_certificate_out_of_its_validity(
    bao: TlsOpenBao,
    pki: TestPki,
    start: Callable[..., LoadedProvider],
    window: dict[str, Any],
    message: str,
) -> None:
    good = (bao.cert_file.read_bytes(), bao.key_file.read_bytes())
    bad_cert, bad_key = pki.server("out-of-window", **window)
    bao.serve_certificate(bad_cert, bad_key)
    try:
        provider = start(caFile=str(bao.ca_file))
        provider.wait_healthz("openbao_tls_untrusted")
        error = expect_error(OpenBaoTlsUntrusted, provider.provider.transit.read_key)
        assert str(error) == message
    finally:
        saved_cert, saved_key = bao.workdir / "good.pem", bao.workdir / "good-key.pem"
        saved_cert.write_bytes(good[0])
        write_private(saved_key, good[1].decode())
        bao.serve_certificate(saved_cert, saved_key)
    provider.wait_healthz("ok")  # new connections meet the good certificate again


def test_a_redirect_is_refused_with_its_own_reason(
    start: Callable[..., LoadedProvider],
) -> None:
    with FakeBao() as fake:
        fake.reply_with(lambda seen: Reply(307, b"", headers={"Location": "http://elsewhere/"}))
        provider = start(server=fake, allowInsecureHttp=True)
        provider.wait_healthz("openbao_redirect_refused")
        error = expect_error(OpenBaoRedirected, provider.provider.transit.read_key)
        assert str(error) == "OpenBao answered with a redirect (HTTP 307); refused"
        assert all(not seen.path.startswith("http://elsewhere") for seen in fake.requests)


def test_a_ca_file_without_a_certificate_is_a_config_error(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("# the certificate was never pasted in\n")
    with pytest.raises(ConfigError, match=r"CA file .*ca\.pem holds no PEM certificate$"):
        make_pool(ca_file=bundle)
