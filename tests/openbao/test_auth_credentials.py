"""Credential files, for every method that reads one: each way a file can be bad has its own
clear message, none quotes the content, and a FIFO never hangs the provider."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from _support.leaks import expect_error
from _support.log_records import records_of
from _support.pki import JwtSigner, TestPki, write_private
from bao_kms.errors import AuthCredentialInvalid, ConfigError
from bao_kms.openbao.auth import TokenFileAuth
from bao_kms.openbao.auth.approle import AppRoleLogin
from bao_kms.openbao.auth.cert import CertLogin
from bao_kms.openbao.auth.credentials import (
    MAX_CREDENTIAL_BYTES,
    CredentialFile,
    CredentialProblem,
    read_credential,
)
from bao_kms.openbao.auth.jwt import JwtLogin

pytestmark = pytest.mark.timeout(10)  # a FIFO opened without O_NONBLOCK would hang here

SECRET = "s.TOPSECRET-credential-9f8e"


def credential(path: Path) -> CredentialFile:
    return CredentialFile("auth.approle.secretIdFile", "AppRole secret ID file", str(path))


def fifo(path: Path) -> Path:
    os.mkfifo(path, 0o600)
    return path


def problem_of(path: Path) -> str:
    with pytest.raises(CredentialProblem) as info:
        read_credential(credential(path))
    assert SECRET not in str(info.value)
    return info.value.problem


def test_a_good_file_is_read_without_surrounding_whitespace(tmp_path: Path) -> None:
    path = write_private(tmp_path / "secret", f"\n  {SECRET}\r\n")
    content, signature = read_credential(credential(path))
    assert content == SECRET.encode()
    assert signature[0] == path.stat().st_ino


def test_a_symlink_to_a_good_file_is_followed(tmp_path: Path) -> None:
    """Projected volumes and agents rotate files by swapping a ..data symlink."""
    data = tmp_path / "..2024_01_01"
    data.mkdir()
    target = write_private(data / "secret", SECRET)
    link = tmp_path / "secret"
    link.symlink_to(target)
    assert read_credential(credential(link))[0] == SECRET.encode()


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda d: d / "missing", "does not exist"),
        (lambda d: d, "is a directory, not a file"),
        (lambda d: fifo(d / "fifo"), "is not a regular file"),
        (lambda d: write_private(d / "empty", ""), "is empty"),
        (lambda d: write_private(d / "blank", " \n\t\r\n"), "is empty"),
        (
            lambda d: write_private(d / "huge", "a" * (MAX_CREDENTIAL_BYTES + 1)),
            "is larger than 64 KiB",
        ),
    ],
    ids=["missing", "directory", "fifo", "empty", "whitespace", "oversized"],
)
def test_file_problems(tmp_path: Path, make: Callable[[Path], Path], problem: str) -> None:
    assert problem_of(make(tmp_path)).startswith(problem)


def test_symlink_loop(tmp_path: Path) -> None:
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    assert problem_of(tmp_path / "a") == "is a symlink loop"


def test_unreadable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Tests may run as root, which reads any mode: EACCES is what a non-root provider gets.
    path = write_private(tmp_path / "secret", SECRET)

    def refuse(*args: object, **kwargs: object) -> int:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "open", refuse)
    assert problem_of(path) == "cannot be read: permission denied to this process"


@pytest.mark.parametrize(
    ("mode", "problem"),
    [
        (0o644, "is readable or writable by other users (mode 0644): make it 0600"),
        (0o602, "is readable or writable by other users (mode 0602): make it 0600"),
        (0o620, "is writable by its group (mode 0620): make it 0600"),
    ],
)
def test_permissions_others_could_use_are_refused(tmp_path: Path, mode: int, problem: str) -> None:
    path = write_private(tmp_path / "secret", SECRET)
    path.chmod(mode)
    assert problem_of(path) == problem


def test_group_readable_is_accepted_with_one_warning(tmp_path: Path) -> None:
    path = write_private(tmp_path / "secret", SECRET)
    path.chmod(0o640)
    with records_of("bao_kms.openbao.auth", logging.WARNING) as records:
        for _ in range(3):
            assert read_credential(credential(path))[0] == SECRET.encode()
    warnings = [r for r in records if "readable by its group" in r.getMessage()]
    assert len(warnings) == 1
    assert warnings[0].path == str(path) and warnings[0].mode == "0640"  # type: ignore[attr-defined]


def test_certificates_are_public(tmp_path: Path) -> None:
    path = tmp_path / "client.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\n")
    path.chmod(0o644)
    public = CredentialFile("auth.cert.certFile", "client certificate file", str(path), False)
    assert read_credential(public)[0].startswith(b"-----BEGIN")


def test_start_and_run_time_forms(tmp_path: Path) -> None:
    problem = CredentialProblem(credential(tmp_path / "secret-id"), "is empty")
    config = problem.config_error()
    assert isinstance(config, ConfigError)
    assert str(config) == f"auth.approle.secretIdFile {tmp_path / 'secret-id'}: is empty"
    runtime = problem.runtime_error()
    assert isinstance(runtime, AuthCredentialInvalid)
    assert str(runtime) == "AppRole secret ID file is empty"  # no path: kube-apiserver sees it


# --- every method's files go through the same checks --------------------------------------------


def _approle(tmp_path: Path, secret_file: Path) -> Callable[[], object]:
    role = write_private(tmp_path / "role-id", "role-1")
    return AppRoleLogin("approle", role, secret_file).check


def _jwt(tmp_path: Path, token_file: Path) -> Callable[[], object]:
    return JwtLogin("jwt", "kms", token_file).check


@pytest.mark.parametrize("method", [_approle, _jwt])
@pytest.mark.parametrize("content", ["", f"{SECRET} two", "tök\x00en"])
def test_login_methods_refuse_bad_content_without_echoing(
    tmp_path: Path, method: Callable[[Path, Path], Callable[[], object]], content: str
) -> None:
    path = write_private(tmp_path / "credential", content)
    with pytest.raises(CredentialProblem) as info:
        method(tmp_path, path)()
    assert SECRET not in str(info.value)


def test_token_method_refuses_a_world_readable_file_at_start(tmp_path: Path) -> None:
    path = write_private(tmp_path / "token", SECRET)
    path.chmod(0o604)
    with pytest.raises(ConfigError, match=r"^auth\.token\.file .*: is readable or writable"):
        TokenFileAuth(path).check_credentials()
    expect_error(AuthCredentialInvalid, TokenFileAuth(path).token, secrets=(SECRET,))


def test_cert_method_files(tmp_path: Path) -> None:
    pki = TestPki(tmp_path / "pki")
    cert, key = pki.client()
    CertLogin("cert", "kms", cert, key).check()
    other_cert, _ = pki.client("other")

    def problem(cert_file: Path, key_file: Path) -> str:
        with pytest.raises(CredentialProblem) as info:
            CertLogin("cert", "kms", cert_file, key_file).check()
        return str(info.value)

    assert problem(other_cert, key) == (
        "client key file does not belong to the certificate (auth.cert.certFile)"
    )
    assert problem(key, key) == "client certificate file holds no PEM certificate"
    key.chmod(0o644)
    assert problem(cert, key).startswith("client key file is readable or writable by other")
    assert problem(cert, tmp_path / "nope") == "client key file does not exist"


def test_cert_method_refuses_an_encrypted_key_instead_of_prompting(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pki = TestPki(tmp_path / "pki")
    cert, key = pki.client()
    private = serialization.load_pem_private_key(key.read_bytes(), None)
    key.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass"),
        )
    )
    with pytest.raises(CredentialProblem, match="^client key file is encrypted"):
        CertLogin("cert", "kms", cert, key).check()


def test_jwt_file_problems_name_the_file(tmp_path: Path) -> None:
    signer = JwtSigner()
    path = write_private(tmp_path / "jwt", signer.sign())
    JwtLogin("jwt", "kms", path).check()
    path.unlink()
    with pytest.raises(CredentialProblem, match="^JWT file does not exist$"):
        JwtLogin("jwt", "kms", path).check()
