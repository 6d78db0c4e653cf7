"""make_pool's TLS settings: CA bundle checks, a client certificate re-read on rotation, the
server name; start-up errors name the config key. Handshakes against the real ``bao`` are in
tests/integration/test_auth_tls.py."""

from __future__ import annotations

import os
import shutil
import ssl
from pathlib import Path

import pytest

from _support.pki import TestPki
from bao_kms.config import ClientCertificate
from bao_kms.errors import ConfigError
from bao_kms.openbao import make_pool
from bao_kms.openbao._tls import ClientCertContext, present_current_certificate


@pytest.fixture
def pki(tmp_path: Path) -> TestPki:
    return TestPki(tmp_path / "pki")


def test_pool_with_a_client_certificate_and_a_server_name(pki: TestPki) -> None:
    cert, key = pki.client()
    pool = make_pool(ca_file=pki.ca_file, client_cert=(str(cert), str(key)), server_hostname="b")
    try:
        context = pool.ssl_context
        assert isinstance(context, ClientCertContext)
        assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
        assert context.current().verify_mode == ssl.CERT_REQUIRED
        assert pool.server_hostname == "b"
    finally:
        pool.clear()


def test_rotated_client_certificate_is_picked_up(pki: TestPki, tmp_path: Path) -> None:
    cert, key = pki.client("kms", file_stem="live")
    pool = make_pool(ca_file=pki.ca_file, client_cert=(str(cert), str(key)))
    context = pool.ssl_context
    first = context.current()
    assert context.current() is first  # unchanged files: the same inner context
    new_cert, new_key = pki.client("kms", file_stem="next")
    shutil.copyfile(new_key, tmp_path / "key.tmp")
    os.replace(tmp_path / "key.tmp", key)
    shutil.copyfile(new_cert, tmp_path / "cert.tmp")
    os.replace(tmp_path / "cert.tmp", cert)
    present_current_certificate(pool)  # what cert auth does before each login
    assert context.current() is not first


def test_half_rotated_pair_keeps_the_previous_certificate(pki: TestPki) -> None:
    cert, key = pki.client("kms", file_stem="live")
    pool = make_pool(ca_file=pki.ca_file, client_cert=(str(cert), str(key)))
    context = pool.ssl_context
    first = context.current()
    other_cert, _ = pki.client("other")
    shutil.copyfile(other_cert, cert)  # the key has not arrived yet: the pair does not match
    assert context.current(force=True) is first


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c, k: k.unlink(), "openbao.clientKeyFile {key}: does not exist"),
        (lambda c, k: k.chmod(0o644), "openbao.clientKeyFile {key}: is readable or writable"),
        (lambda c, k: c.write_text("nothing\n"), "openbao.clientCertFile {cert}: holds no PEM"),
        (lambda c, k: k.write_text("nothing\n"), "openbao.clientKeyFile {key}: holds no PEM"),
    ],
    ids=["missing-key", "readable-key", "not-a-certificate", "not-a-key"],
)
def test_client_certificate_problems_name_the_config_key(pki: TestPki, change, message) -> None:
    cert, key = pki.client()
    change(cert, key)
    with pytest.raises(ConfigError) as info:
        make_pool(ca_file=None, client_cert=(str(cert), str(key)))
    assert str(info.value).startswith(message.format(cert=cert, key=key))


def test_cert_method_errors_name_its_keys(pki: TestPki) -> None:
    cert, key = pki.client()
    other, _ = pki.client("other")
    files = ClientCertificate(str(other), str(key), "auth.cert.certFile", "auth.cert.keyFile")
    with pytest.raises(ConfigError) as info:
        make_pool(ca_file=None, client_cert=files)
    assert str(info.value) == (
        f"auth.cert.keyFile {key}: does not belong to the certificate (auth.cert.certFile)"
    )


def test_ca_file_that_holds_no_certificate(tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN PRIVATE KEY-----\n")
    with pytest.raises(ConfigError, match="holds no PEM certificate"):
        make_pool(ca_file=bundle)
    with pytest.raises(ConfigError, match="cannot be read"):
        make_pool(ca_file=tmp_path)
