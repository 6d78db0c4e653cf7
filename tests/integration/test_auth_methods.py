"""AppRole, JWT and TLS certificate auth against the real ``bao`` over a TLS listener.

Each method is set up for real (tests/_support/auth_methods.py) with a 2 s token TTL and a
5 s max TTL, so a dozen seconds of Encrypt/Decrypt spans several renewals and max-TTL
re-logins; tokens are revoked out of band mid-load; credential files are rotated and broken.
``BAO_KMS_AUTH_LOAD_SECONDS=30`` runs the loads for 30 s.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from _support import provider_document
from _support.auth_methods import SETUPS, AppRoleSetup, MethodSetup
from _support.leaks import expect_error
from _support.openbao_tls import TlsOpenBao
from _support.pki import TestPki, write_private
from _support.provider_load import LoadedProvider, load_seconds, run_load
from bao_kms.errors import OpenBaoTlsUntrusted
from bao_kms.openbao.auth import LoginStatus, RenewalStatus

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

METHODS = list(SETUPS)


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
def setup(request: pytest.FixtureRequest, bao: TlsOpenBao, tmp_path: Path) -> Iterator[MethodSetup]:
    """The method named by the test's parameter, enabled on a fresh mount path."""
    method: str = request.param
    chosen = SETUPS[method](bao.api, tmp_path / method)
    chosen.enable()
    yield chosen
    bao.api("DELETE", f"sys/auth/{chosen.mount}")


@pytest.fixture
def start(bao: TlsOpenBao, socket_dir: Path) -> Iterator[Callable[..., LoadedProvider]]:
    running: list[LoadedProvider] = []

    def start(auth: dict[str, Any], wait: bool = True, **overrides: Any) -> LoadedProvider:
        document = document_for(bao, socket_dir / f"kms-{len(running)}.sock", auth, **overrides)
        provider = LoadedProvider(document).start()
        running.append(provider)
        if wait:
            provider.wait_healthz("ok")
        return provider

    yield start
    for provider in running:
        provider.stop()


def document_for(bao: TlsOpenBao, socket: Path, auth: dict[str, Any], **openbao: Any):
    document = provider_document(bao, socket.with_suffix(".unused"), socket, ca_file=bao.ca_file)
    document["auth"] = auth
    document["openbao"].update(openbao)
    return document


def report(capsys: pytest.CaptureFixture[str], line: str) -> None:
    with capsys.disabled():
        print(f"\n  {line}")


# --- the load: several TTLs, re-logins at max TTL, revocation --------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("setup", METHODS, indirect=True)
def test_load_across_token_lifetimes_and_a_revocation(
    setup: MethodSetup,
    start: Callable[..., LoadedProvider],
    capsys: pytest.CaptureFixture[str],
) -> None:
    provider = start(setup.auth_section())
    seconds = load_seconds(12.0)
    revoked_at = seconds - 5.0
    result = run_load(provider.client, seconds, events=((revoked_at, setup.revoke_tokens),))
    logins = provider.stats.logins()
    renewals = provider.stats.renewals()
    report(
        capsys,
        f"{setup.method}: {result.summary()}; logins {_plain(logins)}; "
        f"renewals {_plain(renewals)}; first success "
        f"{result.first_success_after(revoked_at):.2f} s after the revocation",
    )
    assert result.calls["decrypt"] > 100
    assert result.failures == []  # none before the revocation, none after it either
    assert result.first_success_after(revoked_at) < 5.0
    # 5 s max TTL: a re-login every ~4 s (the revocation forces one more), renewals in
    # between. How many renewals land before each cap depends on thread timing on a busy
    # machine, so at least one renewal is seen hitting the max TTL, and the logins count
    # the re-logins: the first, one after the cap, one after the revocation.
    assert logins[LoginStatus.SUCCESS] >= 3
    assert renewals[RenewalStatus.SUCCESS] >= 2
    assert renewals[RenewalStatus.MAX_TTL] >= 1
    assert logins[LoginStatus.REFUSED] == logins[LoginStatus.INVALID_CREDENTIAL] == 0
    assert provider.healthz() == "ok"


@pytest.mark.parametrize("setup", METHODS, indirect=True)
def test_replaced_credential_is_used_by_the_next_login(
    setup: MethodSetup, start: Callable[..., LoadedProvider]
) -> None:
    provider = start(setup.auth_section())
    setup.rotate()  # the old credential no longer logs in
    setup.revoke_tokens()  # so the next request needs a login now
    result = run_load(provider.client, 2.0, workers=2)
    assert result.failures == []
    assert provider.stats.logins()[LoginStatus.REFUSED] == 0


# --- bad credentials: exit 3 at start, a Status reason at run time ----------------------------


def serve_exit(config: dict[str, Any], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "bao_kms", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
    )


def _world_readable(setup: MethodSetup) -> str:
    path = Path(setup.auth_section()[setup.method][_secret_key(setup)])
    path.chmod(0o644)
    return "is readable or writable by other users (mode 0644)"


def _missing(setup: MethodSetup) -> str:
    Path(setup.auth_section()[setup.method][_secret_key(setup)]).unlink()
    return "does not exist"


def _empty(setup: MethodSetup) -> str:
    write_private(Path(setup.auth_section()[setup.method][_secret_key(setup)]), "\n")
    return "is empty"


def _secret_key(setup: MethodSetup) -> str:
    return {"approle": "secretIdFile", "jwt": "tokenFile", "cert": "keyFile"}[setup.method]


@pytest.mark.parametrize("setup", METHODS, indirect=True)
@pytest.mark.parametrize("damage", [_world_readable, _missing, _empty])
def test_bad_credential_file_at_start_exits_3_naming_it(
    setup: MethodSetup,
    damage: Callable[[MethodSetup], str],
    bao: TlsOpenBao,
    socket_dir: Path,
    tmp_path: Path,
) -> None:
    problem = damage(setup)
    document = document_for(bao, socket_dir / "kms.sock", setup.auth_section())
    finished = serve_exit(document, tmp_path)
    assert finished.returncode == 3, finished.stderr
    key = f"auth.{setup.method}.{_secret_key(setup)}"
    assert key in finished.stderr and problem in finished.stderr
    assert "Traceback" not in finished.stderr


def test_expired_jwt_at_start_names_the_claim(
    bao: TlsOpenBao, socket_dir: Path, tmp_path: Path
) -> None:
    setup = SETUPS["jwt"](bao.api, tmp_path / "jwt")
    setup.mount = "jwt-expired"
    setup.enable()
    write_private(setup.jwt_file, setup.signer.sign(lifetime=-3600))  # type: ignore[attr-defined]
    finished = serve_exit(
        document_for(bao, socket_dir / "kms.sock", setup.auth_section()), tmp_path
    )
    assert finished.returncode == 3
    assert "auth.jwt.tokenFile" in finished.stderr and "(claim exp)" in finished.stderr
    assert "Traceback" not in finished.stderr


@pytest.mark.parametrize("setup", ["approle"], indirect=True)
def test_bad_credentials_at_run_time_are_status_reasons(
    setup: MethodSetup, start: Callable[..., LoadedProvider]
) -> None:
    assert isinstance(setup, AppRoleSetup)
    provider = start(setup.auth_section())
    secret_id = setup.secret_id_file.read_text()
    setup.secret_id_file.unlink()
    setup.revoke_tokens()
    provider.wait_healthz("auth_credential_invalid")
    write_private(setup.secret_id_file, "not-the-secret-id\n")
    provider.wait_healthz("auth_login_refused", timeout=40)  # after the backoff
    write_private(setup.secret_id_file, secret_id)
    provider.wait_healthz("ok", timeout=40)
    assert provider.stats.logins()[LoginStatus.REFUSED] >= 1


# --- TLS: every request presents the certificate; the server's is checked ---------------------


@pytest.mark.parametrize("setup", ["cert"], indirect=True)
def test_cert_auth_presents_the_certificate_on_the_connection(
    setup: MethodSetup, start: Callable[..., LoadedProvider]
) -> None:
    provider = start(setup.auth_section())
    assert provider.pool.count("auth/cert/login") >= 1
    assert provider.stats.logins()[LoginStatus.SUCCESS] >= 1


@pytest.mark.parametrize("setup", ["approle"], indirect=True)
def test_tls_server_name_is_what_the_certificate_is_checked_against(
    setup: MethodSetup, start: Callable[..., LoadedProvider]
) -> None:
    good = start(setup.auth_section(), tlsServerName="bao.test")
    assert good.healthz() == "ok"
    wrong = start(setup.auth_section(), wait=False, tlsServerName="other.test")
    wrong.wait_healthz("openbao_tls_untrusted")
    error = expect_error(OpenBaoTlsUntrusted, wrong.provider.transit.read_key)
    assert str(error) == (
        "OpenBao's TLS certificate is for another host name (see openbao.tlsServerName)"
    )


def _plain(counts: Mapping[Any, int]) -> dict[str, int]:
    return {str(status): count for status, count in counts.items() if count}
