"""Transport against a scripted fake server: every classification branch, deadlines, failover.

The fake only answers what it is told to; what real OpenBao answers is pinned down in the
integration tests. Every expected error goes through ``expect_error``, which also checks that
no token, key name, mount path or server error text leaks into its message.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from _support.fake_openbao import FakeBao, RefusingAddress, Reply, Seen, errors_body
from _support.leaks import KEY, MOUNT, NEW_TOKEN, SERVER_TEXT, TOKEN, expect_error
from bao_kms.errors import (
    AuthCredentialInvalid,
    ConfigError,
    DeadlineExceeded,
    InvalidCiphertext,
    KmsError,
    OpenBaoBadResponse,
    OpenBaoPermissionDenied,
    OpenBaoRedirected,
    OpenBaoRejected,
    OpenBaoSealed,
    OpenBaoUnauthenticated,
    OpenBaoUnavailable,
)
from bao_kms.openbao import TokenFileAuth, Transport, _http_errors, make_pool
from bao_kms.openbao.auth.token_calls import TokenCalls
from bao_kms.openbao.connections import ConnectionPool

pytestmark = pytest.mark.timeout(30)

PATH = f"{MOUNT}/decrypt/{KEY}"
MakeTransport = Callable[..., Transport]


def replace_token(path: Path, token: str) -> None:
    temporary = path.with_suffix(".new")
    temporary.write_text(token)
    temporary.chmod(0o600)  # the provider refuses credential files others can read
    os.replace(temporary, path)


# --- success and what is sent ----------------------------------------------------------------


def test_2xx_returns_body_and_sends_the_expected_headers(
    fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply(Reply(200, b'{"data":{}}'))
    transport = make_transport(fake.address)
    assert transport.request("POST", PATH, b'{"a":1}') == b'{"data":{}}'
    (seen,) = fake.requests
    assert (seen.method, seen.path, seen.body) == ("POST", f"/v1/{PATH}", b'{"a":1}')
    assert seen.headers["X-Vault-Token"] == TOKEN
    assert seen.headers["X-Vault-Request"] == "true"
    assert seen.headers["Content-Type"] == "application/json"
    assert "X-Vault-Namespace" not in seen.headers


def test_get_without_body_has_no_content_type(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(204, b""))
    assert make_transport(fake.address).request("GET", "sys/x") == b""
    assert "Content-Type" not in fake.requests[0].headers


def test_namespace_header(fake: FakeBao, make_transport: MakeTransport) -> None:
    transport = make_transport(fake.address, namespace="team-a/child")
    transport.request("GET", "sys/x")
    transport.request("GET", "sys/health", root_namespace=True, anonymous=True)
    first, second = fake.requests
    assert first.headers["X-Vault-Namespace"] == "team-a/child"
    assert "X-Vault-Namespace" not in second.headers
    assert "X-Vault-Token" not in second.headers


def test_anonymous_request_does_not_need_the_token_file(
    fake: FakeBao, make_transport: MakeTransport, tmp_path: Path
) -> None:
    transport = make_transport(fake.address, auth=TokenFileAuth(tmp_path / "missing"))
    assert transport.request("GET", "sys/health", anonymous=True) == b"{}"
    expect_error(AuthCredentialInvalid, transport.request, "GET", "sys/x")
    assert len(fake.requests) == 1


def test_accepted_statuses_are_returned(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(503, {"sealed": True}))
    transport = make_transport(fake.address)
    assert transport.request("GET", "sys/health", accept={503}) == b'{"sealed":true}'


# --- classification --------------------------------------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_not_followed(
    status: int, fake: FakeBao, make_transport: MakeTransport
) -> None:
    with FakeBao() as target:
        fake.reply(Reply(status, b"", headers={"Location": f"{target.address}/v1/{PATH}"}))
        error = expect_error(OpenBaoRedirected, make_transport(fake.address).request, "GET", PATH)
        assert str(status) in str(error)
        assert len(target.requests) == 0
        assert len(fake.requests) == 1


def test_400_without_classifier_is_rejected(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(400, errors_body(SERVER_TEXT)))
    error = expect_error(OpenBaoRejected, make_transport(fake.address).request, "GET", PATH)
    assert "400" in str(error)


def test_400_with_classifier(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(400, errors_body(SERVER_TEXT)))
    bodies: list[bytes] = []

    def classify(body: bytes) -> KmsError:
        bodies.append(body)
        return InvalidCiphertext("classified")

    transport = make_transport(fake.address)
    expect_error(InvalidCiphertext, transport.request, "POST", PATH, b"{}", classify_400=classify)
    assert bodies == [b'{"errors":["' + SERVER_TEXT.replace('"', '\\"').encode() + b'"]}']


def test_classifier_only_applies_to_400(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(404, errors_body()))

    def classify(body: bytes) -> KmsError:
        raise AssertionError("must not be called")

    transport = make_transport(fake.address)
    expect_error(OpenBaoRejected, transport.request, "GET", PATH, classify_400=classify)


@pytest.mark.parametrize("status", [404, 405, 409, 413, 422, 499])
def test_other_4xx_are_rejected(status: int, fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(status, errors_body(SERVER_TEXT)))
    error = expect_error(OpenBaoRejected, make_transport(fake.address).request, "GET", PATH)
    assert str(status) in str(error)


@pytest.mark.parametrize("status", [429, 500, 501, 502, 504, 599])
def test_429_and_5xx_are_unavailable(
    status: int, fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply(Reply(status, errors_body(SERVER_TEXT)))
    error = expect_error(OpenBaoUnavailable, make_transport(fake.address).request, "GET", PATH)
    assert str(status) in str(error)


def test_503_sealed(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(503, errors_body("Vault is sealed")))
    error = expect_error(OpenBaoSealed, make_transport(fake.address).request, "GET", PATH)
    assert "503" in str(error)


@pytest.mark.parametrize(
    "body",
    [
        errors_body("upstream connect error"),
        errors_body("unsealed"),  # a word containing "sealed" is not "sealed"
        errors_body(),
        {"errors": "Vault is sealed"},  # not a list
        b"Vault is sealed",  # not JSON
        b"<html>503 Service Unavailable</html>",
        b"",
    ],
)
def test_503_other_is_unavailable_not_sealed(
    body: object, fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply(Reply(503, body))
    expect_error(OpenBaoUnavailable, make_transport(fake.address).request, "GET", PATH)


@pytest.mark.parametrize("status", [401, 403, 404, 500])
def test_non_json_error_bodies(status: int, fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(status, b"\xff\xfe not json " + SERVER_TEXT.encode()))
    with pytest.raises(KmsError) as info:
        make_transport(fake.address).request("GET", PATH)
    assert str(status) in str(info.value)


def test_2xx_body_is_returned_even_when_not_json(
    fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply(Reply(200, b"not json"))
    assert make_transport(fake.address).request("GET", PATH) == b"not json"


def test_unexpected_status_is_a_bad_response(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(600, b"{}"))
    expect_error(OpenBaoBadResponse, make_transport(fake.address).request, "GET", PATH)


# --- 401/403: one token re-read per request --------------------------------------------------


def policy_denies(status: int) -> Callable[[Seen], Reply]:
    """*status* for PATH; ``lookup-self`` accepts the token (so a 403 is the policy's)."""

    def answer(seen: Seen) -> Reply:
        if seen.path.endswith("auth/token/lookup-self"):
            return Reply(200, {"data": {"ttl": 3600}})
        return Reply(status, errors_body("permission denied"))

    return answer


def to_path(fake: FakeBao) -> list[Seen]:
    return [seen for seen in fake.requests if not seen.path.endswith("lookup-self")]


@pytest.mark.parametrize(
    ("status", "cls"), [(401, OpenBaoUnauthenticated), (403, OpenBaoPermissionDenied)]
)
def test_auth_failure_with_unchanged_token_is_not_retried(
    status: int, cls: type[KmsError], fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply_with(policy_denies(status))
    error = expect_error(cls, make_transport(fake.address).request, "GET", PATH)
    assert str(status) in str(error)
    assert len(to_path(fake)) == 1


@pytest.mark.parametrize("status", [401, 403])
def test_auth_failure_retries_once_with_a_new_token(
    status: int, fake: FakeBao, make_transport: MakeTransport, token_file: Path
) -> None:
    def answer(seen: Seen) -> Reply:
        if seen.headers["X-Vault-Token"] == TOKEN:
            replace_token(token_file, NEW_TOKEN)  # rotated while the request was in flight
            return Reply(status, errors_body("permission denied"))
        return Reply(200, b'{"ok":true}')

    fake.reply_with(answer)
    assert make_transport(fake.address).request("GET", PATH) == b'{"ok":true}'
    assert [seen.headers["X-Vault-Token"] for seen in fake.requests] == [TOKEN, NEW_TOKEN]


def test_auth_failure_after_the_retry_is_final(
    fake: FakeBao, make_transport: MakeTransport, token_file: Path
) -> None:
    tokens = iter([NEW_TOKEN, TOKEN, NEW_TOKEN])

    def answer(seen: Seen) -> Reply:
        if seen.path.endswith("auth/token/lookup-self"):
            return Reply(200, {"data": {"ttl": 3600}})
        replace_token(token_file, next(tokens))  # the file changes every time
        return Reply(403, errors_body("permission denied"))

    fake.reply_with(answer)
    transport = make_transport(fake.address)
    expect_error(OpenBaoPermissionDenied, transport.request, "GET", PATH)
    assert len(to_path(fake)) == 2


def test_token_file_gone_on_refresh(
    fake: FakeBao, make_transport: MakeTransport, token_file: Path
) -> None:
    def answer(seen: Seen) -> Reply:
        token_file.unlink()
        return Reply(401, errors_body("permission denied"))

    fake.reply_with(answer)
    error = expect_error(AuthCredentialInvalid, make_transport(fake.address).request, "GET", PATH)
    assert str(error) == "OpenBao token file does not exist"
    assert len(fake.requests) == 1


# --- network failures, timeouts and deadlines ------------------------------------------------


def test_connection_refused(refusing: RefusingAddress, make_transport: MakeTransport) -> None:
    error = expect_error(OpenBaoUnavailable, make_transport(refusing.address).request, "GET", PATH)
    assert "connect" in str(error)


def test_read_timeout_is_unavailable(fake: FakeBao, make_transport: MakeTransport) -> None:
    fake.reply(Reply(200, b"{}", delay=5.0))
    transport = make_transport(fake.address, timeout=0.2)
    started = time.monotonic()
    expect_error(OpenBaoUnavailable, transport.request, "GET", PATH, deadline=started + 10)
    assert time.monotonic() - started < 2.0


def test_timeout_cut_short_by_deadline_is_deadline_exceeded(
    fake: FakeBao, make_transport: MakeTransport
) -> None:
    fake.reply(Reply(200, b"{}", delay=5.0))
    transport = make_transport(fake.address, timeout=3.0)
    started = time.monotonic()
    expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=started + 0.2)
    assert time.monotonic() - started < 2.0


def test_deadline_already_passed_sends_nothing(
    fake: FakeBao, make_transport: MakeTransport
) -> None:
    transport = make_transport(fake.address)
    expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=time.monotonic() - 1)
    expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=time.monotonic())
    assert fake.requests == []


def test_deadline_uses_the_injected_clock(fake: FakeBao, make_transport: MakeTransport) -> None:
    transport = make_transport(fake.address, clock=lambda: 500.0)
    assert transport.request("GET", PATH, deadline=501.0) == b"{}"
    expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=500.0)
    assert len(fake.requests) == 1


def test_busy_pool_waits_at_most_the_timeout(fake: FakeBao, token_file: Path) -> None:
    pool = make_pool(ca_file=None, maxsize=1)  # one connection per address, block=True
    try:
        transport = Transport([fake.address], TokenFileAuth(token_file), pool=pool, timeout=1.5)
        fake.reply(Reply(200, b"{}", delay=1.0), Reply(200, b"{}"))
        holder = threading.Thread(target=transport.request, args=("GET", PATH))
        holder.start()
        while not fake.requests:
            time.sleep(0.01)
        quick = Transport([fake.address], TokenFileAuth(token_file), pool=pool, timeout=0.2)
        error = expect_error(OpenBaoUnavailable, quick.request, "GET", PATH)
        assert "connection" in str(error)
        expect_error(
            DeadlineExceeded, transport.request, "GET", PATH, deadline=time.monotonic() + 0.2
        )
        holder.join(10)
        assert transport.request("GET", PATH) == b"{}"  # the connection came back
    finally:
        pool.clear()


# --- failover --------------------------------------------------------------------------------


def test_failover_past_a_refused_address_and_remember(
    refusing: RefusingAddress,
    fake: FakeBao,
    make_transport: MakeTransport,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="bao_kms.openbao")
    transport = make_transport(refusing.address, fake.address)
    assert transport.request("GET", PATH) == b"{}"
    assert transport.preferred_address == fake.address
    assert f"OpenBao requests now go to {fake.address}" in caplog.text
    for secret in (TOKEN, KEY, MOUNT):
        assert secret not in caplog.text
    assert transport.request("GET", PATH) == b"{}"
    assert len(fake.requests) == 2


@pytest.mark.parametrize(
    "failure",
    [
        Reply(503, errors_body("Vault is sealed")),
        Reply(502, b"bad gateway"),
        Reply(412, b"{}"),
        Reply(307, b"", headers={"Location": "http://127.0.0.1:1/"}),
    ],
)
def test_failover_on_unavailable_answers(failure: Reply, make_transport: MakeTransport) -> None:
    with FakeBao() as first, FakeBao() as second:
        first.reply(failure)
        second.reply(Reply(200, b'{"from":"second"}'))
        transport = make_transport(first.address, second.address)
        assert transport.request("GET", PATH) == b'{"from":"second"}'
        assert transport.request("GET", PATH) == b'{"from":"second"}'
        assert len(first.requests) == 1  # the second request started with the one that worked
        assert len(second.requests) == 2


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, OpenBaoRejected),
        (403, OpenBaoPermissionDenied),
        (404, OpenBaoRejected),
        # a rate-limit quota is the cluster's: another node would refuse the same way
        (429, OpenBaoUnavailable),
    ],
)
def test_no_failover_on_4xx(
    status: int, cls: type[KmsError], make_transport: MakeTransport
) -> None:
    with FakeBao() as first, FakeBao() as second:
        first.reply_with(policy_denies(status))
        expect_error(cls, make_transport(first.address, second.address).request, "GET", PATH)
        assert len(to_path(first)) == 1
        assert second.requests == []


def test_all_addresses_failing_raises_the_last_failure(
    refusing: RefusingAddress, make_transport: MakeTransport
) -> None:
    with FakeBao() as sealed:
        sealed.reply(Reply(503, errors_body("Vault is sealed")))
        transport = make_transport(refusing.address, sealed.address)
        expect_error(OpenBaoSealed, transport.request, "GET", PATH)
        # Next time it starts again from the first address (nothing answered), once each.
        expect_error(OpenBaoSealed, transport.request, "GET", PATH)
        assert len(sealed.requests) == 2


def test_failover_stops_at_the_deadline(make_transport: MakeTransport) -> None:
    with FakeBao() as slow, FakeBao() as spare:
        slow.reply(Reply(200, b"{}", delay=5.0))
        transport = make_transport(slow.address, spare.address, timeout=3.0)
        deadline = time.monotonic() + 0.3
        expect_error(DeadlineExceeded, transport.request, "GET", PATH, deadline=deadline)
        assert spare.requests == []


def test_failover_with_time_left(make_transport: MakeTransport) -> None:
    with FakeBao() as slow, FakeBao() as spare:
        slow.reply(Reply(200, b"{}", delay=5.0))
        transport = make_transport(slow.address, spare.address, timeout=0.2)
        assert transport.request("GET", PATH, deadline=time.monotonic() + 3) == b"{}"
        assert transport.preferred_address == spare.address


def test_concurrent_requests_with_failover(
    refusing: RefusingAddress, fake: FakeBao, make_transport: MakeTransport
) -> None:
    transport = make_transport(refusing.address, fake.address)
    results: list[bytes] = []
    failures: list[BaseException] = []

    def worker() -> None:
        try:
            for _ in range(10):
                results.append(transport.request("GET", PATH))
        except BaseException as error:  # noqa: BLE001 - reported below
            failures.append(error)

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert not failures
    assert results == [b"{}"] * 120


# --- construction ----------------------------------------------------------------------------


def test_needs_an_address(token_file: Path, pool: ConnectionPool) -> None:
    with pytest.raises(ValueError, match="address"):
        Transport([], TokenFileAuth(token_file), pool=pool)


def test_trailing_slash_in_address(fake: FakeBao, make_transport: MakeTransport) -> None:
    make_transport(fake.address + "/").request("GET", PATH)
    assert fake.requests[0].path == f"/v1/{PATH}"


def test_pool_refuses_a_missing_ca_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="CA file"):
        make_pool(ca_file=tmp_path / "missing.pem")


def test_pool_refuses_a_ca_file_without_certificates(tmp_path: Path) -> None:
    bundle = tmp_path / "empty.pem"
    bundle.write_text("not a certificate\n")
    with pytest.raises(ConfigError, match="CA file"):
        make_pool(ca_file=str(bundle))


def test_pool_settings() -> None:
    pool = make_pool(ca_file=None, maxsize=7, server_hostname="openbao.internal")
    try:
        assert pool.maxsize == 7
        assert pool.server_hostname == "openbao.internal"
        assert pool.ssl_context is not None
        assert pool.ssl_context.verify_mode == ssl.CERT_REQUIRED
        assert pool.ssl_context.check_hostname
    finally:
        pool.clear()


# --- what cannot go into a header -------------------------------------------------------------


class FixedAuth:
    """An auth whose token is whatever the test says (a login answer could say anything)."""

    def __init__(self, token: str) -> None:
        self._token = token

    def token(self) -> str:
        return self._token

    def refresh(self, refused: str | None = None) -> bool:
        return False


@pytest.mark.parametrize(
    "token", [f"{TOKEN}\r\nX-Injected: 1", f"{TOKEN}\u00fc", f"{TOKEN} x", f"{TOKEN}\u2028"]
)
def test_a_token_a_header_cannot_carry_is_never_sent_nor_quoted(
    fake: FakeBao, pool: ConnectionPool, token: str
) -> None:
    # http.client would refuse it with a ValueError quoting the value: the token, in a
    # traceback. The transport refuses it first, by name only.
    transport = Transport([fake.address], FixedAuth(token), pool=pool)  # type: ignore[arg-type]
    error = expect_error(OpenBaoUnauthenticated, transport.request, "GET", PATH)
    assert "header" in str(error)
    assert fake.requests == []


def test_a_value_http_client_refuses_to_send_is_never_quoted() -> None:
    # http.client's ValueError quotes the header value it refused (the token, perhaps)
    refused = ValueError(f"Invalid header value b'{TOKEN}\\r\\nX-Injected: 1'")
    error = _http_errors.network_error(refused, 2.0, False)
    assert isinstance(error, OpenBaoUnavailable)
    assert TOKEN not in str(error) and "could not be sent" in str(error)


def test_a_login_answered_with_a_token_of_invalid_form_is_refused(fake: FakeBao) -> None:
    fake.reply(Reply(200, {"auth": {"client_token": "s.x\r\nX-Injected: 1", "lease_duration": 60}}))
    pool = make_pool(ca_file=None, maxsize=1)
    try:
        transport = Transport([fake.address], FixedAuth(TOKEN), pool=pool)  # type: ignore[arg-type]
        calls = TokenCalls(transport, time.monotonic)
        error = expect_error(OpenBaoBadResponse, calls.login, "auth/approle/login", {}, "approle")
        assert "invalid form" in str(error) and "X-Injected" not in str(error)
    finally:
        pool.clear()
