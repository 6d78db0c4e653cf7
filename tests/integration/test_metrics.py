"""/metrics over real HTTP after real traffic through the socket to a real OpenBao: every metric
the issue lists is there, with the expected labels and values."""

from __future__ import annotations

import http.client
import os
import socket
from pathlib import Path

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bao_kms import _codec
from bao_kms._version import __version__
from bao_kms.logs import short_hash
from bao_kms.ops.http import split_address
from bao_kms.reasons import Reason

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(address: str) -> Samples:
    host, port = split_address(address)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        text = response.read().decode()
    finally:
        connection.close()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def leave_a_stale_socket(path: Path) -> None:
    """What a crash leaves: a socket file nobody listens on."""
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(str(path))
    stale.close()


def test_metrics_after_real_traffic(start_provider, socket_dir):
    leave_a_stale_socket(socket_dir / "kms-0.sock")  # the path start_provider will use
    running = start_provider()
    client = running.client
    seed = os.urandom(32)
    key_id = client.status().key_id
    encrypted = client.encrypt(seed)
    assert client.decrypt(encrypted.ciphertext, encrypted.key_id, encrypted.annotations)
    annotations = dict(encrypted.annotations)
    # a compared annotation: plugin-version is only checked for form, and "x" is well-formed
    # (which annotation a map iterates first varies from process to process)
    compared = next(key for key in annotations if key != _codec.ANN_PLUGIN_VERSION)
    annotations[compared] = b"x"
    for broken in (
        lambda: client.decrypt(encrypted.ciphertext, encrypted.key_id, annotations),
        lambda: client.decrypt(encrypted.ciphertext, "obk2." + "A" * 43, encrypted.annotations),
    ):
        with pytest.raises(grpc.RpcError):
            broken()

    samples = scrape(running.provider.ops.addresses["/metrics"])
    requests = "openbao_kms_grpc_requests_total"
    assert value(samples, requests, method="Status", code="OK") >= 1
    assert value(samples, requests, method="Encrypt", code="OK") == 1
    assert value(samples, requests, method="Decrypt", code="OK") == 1
    assert value(samples, requests, method="Decrypt", code="INVALID_ARGUMENT") >= 1
    assert value(samples, "openbao_kms_grpc_duration_seconds_count", method="Decrypt") >= 3
    assert value(samples, "openbao_kms_grpc_duration_seconds_bucket", method="Status", le="+Inf")
    assert value(samples, "openbao_kms_grpc_in_flight", method="Decrypt") == 0

    openbao = "openbao_kms_openbao_requests_total"
    assert value(samples, openbao, operation="encrypt", status="ok") >= 2  # probe + request
    assert value(samples, openbao, operation="decrypt", status="ok") >= 2
    assert value(samples, openbao, operation="read_key", status="ok") >= 1
    assert value(samples, openbao, operation="read_keys_config", status="ok") >= 1
    assert value(samples, "openbao_kms_openbao_duration_seconds_count", operation="decrypt") >= 2

    assert value(samples, "openbao_kms_key_version") == 1
    assert value(samples, "openbao_kms_status_key_id_hash", hash=short_hash(key_id)) == 1
    assert value(samples, "openbao_kms_status_healthy") == 1
    for reason in Reason:
        assert value(samples, "openbao_kms_status_reason", reason=reason.value) == 0
    age = value(samples, "openbao_kms_status_cache_age_seconds")
    assert age is not None and 0 <= age < 5
    assert value(samples, "openbao_kms_circuit_breaker_state") == 0
    rejections = "openbao_kms_decrypt_rejections_total"
    assert (
        (value(samples, rejections, reason="invalid_annotations") or 0)
        + (value(samples, rejections, reason="malformed_key_id") or 0)
        + (value(samples, rejections, reason="unknown_key_id") or 0)
        + (value(samples, rejections, reason="invalid_request") or 0)
    ) == 2
    assert value(samples, "openbao_kms_socket_stale_removed_total") == 1
    build = value(
        samples, "openbao_kms_build_info", version=__version__, codec=_codec.IMPLEMENTATION
    )
    assert build == 1
    # the auth method's counters, through the collector's hook
    logins = "openbao_kms_auth_login_total"
    assert value(samples, logins, method="token", status="success") >= 1
    assert value(samples, "openbao_kms_auth_renewal_total", status="refused") == 0
    # nothing that names the key, mount, token or identity in any label
    text = repr(samples)
    assert key_id not in text and "transit" not in text.replace("openbao_kms", "")
