"""The fault matrix, the provider's access: its token revoked, its policy narrowed, its token
expiring with renewal blocked (by the max TTL, or by a policy without ``renew-self``), and its
token file replaced under load.

Each test runs on its own Transit mount of the session's dev server (``fresh_key``), with the
token file auth method ``start_provider`` configures; the token's policy is named
``kms-<mount>``. AppRole, JWT and certificate credentials replaced under load are
tests/integration/test_auth_methods.py's.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from _support.auth_methods import replace_private
from _support.fault_table import FAULTS
from _support.faults import (
    Matrix,
    Measured,
    MeasureFault,
    StatusWatch,
    read_back,
    ready,
    run_fault,
    write_objects,
)
from _support.provider_load import run_load
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.manifests import openbao_policy
from bao_kms.openbao.auth import RenewalStatus

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(60)]


def _without(policy: str, path_fragment: str) -> str:
    """*policy* with the block of the path containing *path_fragment* left out."""
    return "path ".join(block for block in policy.split("path ") if path_fragment not in block)


def _token(openbao: EmbeddedOpenBao, mount: str, **settings: Any) -> str:
    body = {"policies": [f"kms-{mount}"], "ttl": "1h", **settings}
    token: str = openbao.api("POST", "auth/token/create", body)["auth"]["client_token"]
    return token


def _token_file(running: Any) -> Path:
    return Path(running.config.auth.token.file)


def test_token_revoked_then_replaced(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    measure_fault: MeasureFault,
) -> None:
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)
    token_file = _token_file(running)
    measure_fault(
        "token_revoked",
        running.client,
        running.provider,
        cause=lambda: openbao.api(
            "POST", "auth/token/revoke", {"token": token_file.read_text().strip()}
        ),
        clear=lambda: replace_private(token_file, _token(openbao, mount)),
    )


def test_policy_narrowed_then_restored(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    measure_fault: MeasureFault,
) -> None:
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)
    policy = openbao_policy(mount, key)

    def put(text: str) -> None:
        openbao.api("PUT", f"sys/policies/acl/kms-{mount}", {"policy": text})

    measure_fault(
        "policy_narrowed",
        running.client,
        running.provider,
        cause=lambda: put(_without(policy, f"{mount}/decrypt/")),
        clear=lambda: put(policy),
    )


@pytest.mark.parametrize(
    ("name", "policy_of", "settings"),
    [
        # renewals go through until the max TTL caps them; then it expires
        ("token_max_ttl", None, {"ttl": "2s", "explicit_max_ttl": "4s"}),
        # renew-self refused by the policy; the token itself would live 4 s
        ("token_renewal_denied", "auth/token/renew-self", {"ttl": "4s", "no_default_policy": True}),
    ],
)
def test_token_expiring_with_renewal_blocked(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    matrix: Matrix,
    name: str,
    policy_of: str | None,
    settings: dict[str, Any],
) -> None:
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)
    token_file = _token_file(running)
    policies = [f"kms-{mount}"]
    if policy_of is not None:
        narrowed = _without(openbao_policy(mount, key), policy_of)
        openbao.api("PUT", f"sys/policies/acl/kms-{mount}-{name}", {"policy": narrowed})
        policies = [f"kms-{mount}-{name}"]

    def swap_in_short_token() -> None:
        replace_private(token_file, _token(openbao, mount, **settings, policies=policies))

    measured, _ = run_fault(
        FAULTS[name],
        running.client,
        running.provider.ops.addresses["/ready"],
        cause=swap_in_short_token,
        clear=lambda: replace_private(token_file, _token(openbao, mount)),
    )
    renewals = {str(k): v for k, v in running.provider.auth.stats.renewals().items() if v}
    measured.note = (
        f"Status refused {measured.detected:.2f} s after a token of TTL {settings['ttl']} "
        f"was swapped in; renewals {renewals or 'none'}"
    )
    matrix.record(name, measured)


def test_credentials_replaced_under_load(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    matrix: Matrix,
) -> None:
    mount, key = fresh_key()
    # the default timeout: a call slowed by a loaded machine is not what this row tests
    running = fault_provider(mount=mount, key=key, openbao_settings={"timeout": "2s"})
    token_file = _token_file(running)
    stored = write_objects(running.client)
    old_token = token_file.read_text().strip()
    replaced: list[float] = []

    def replace_then_revoke() -> None:
        # as an agent rotates it: the new file first, then the old token is revoked at once
        replace_private(token_file, _token(openbao, mount))
        openbao.api("POST", "auth/token/revoke", {"token": old_token})
        replaced.append(time.monotonic())

    with StatusWatch(running.client) as watch:
        started = time.monotonic()
        result = run_load(running.client, 4.0, workers=4, events=((1.5, replace_then_revoke),))
    assert result.failures == [], result.failures[:5]
    assert result.calls["decrypt"] > 50
    read_back(running.client, stored)
    assert running.client.status().healthz == "ok"
    assert ready(running.provider.ops.addresses["/ready"])[0] == 200
    assert watch.not_ok_seconds() == 0.0, watch.changes  # nothing for Status to report
    first_success = result.first_success_after(replaced[0] - started)
    note = f"{result.summary()}; Status not ok for {watch.not_ok_seconds():.2f} s"
    matrix.record("credentials_replaced", Measured(None, first_success, note))


def test_renewal_is_blocked_only_by_what_blocks_it(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
) -> None:
    """The premise of the two rows above: an ordinary renewable token in the token file is
    renewed past its TTL, even when it was issued a while before the provider read it."""
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)
    # a TTL long enough that a renewal due at 2/3 of what is left cannot be missed by a
    # provider that notices the new file up to a second late on a busy machine
    token = _token(openbao, mount, ttl="6s")
    time.sleep(1.2)  # an agent wrote it a moment ago; lookup-self now says ttl 4 or 5
    replace_private(_token_file(running), token)
    time.sleep(7.0)  # past the TTL it was issued with
    renewals = running.provider.auth.stats.renewals()
    assert running.client.status().healthz == "ok"
    assert renewals[RenewalStatus.SUCCESS] >= 1, renewals
