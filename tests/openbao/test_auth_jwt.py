"""JWT auth's local checks: the file is re-read for every login, ``exp``/``nbf`` are checked
with leeway and a minimum remaining lifetime, and every refusal names the claim."""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from _support.pki import JwtSigner, write_private
from bao_kms.openbao.auth.credentials import CredentialProblem
from bao_kms.openbao.auth.jwt import CLOCK_LEEWAY, MIN_REMAINING_LIFETIME, JwtLogin

NOW = 1_800_000_000.0


@pytest.fixture(scope="module")
def signer() -> JwtSigner:
    return JwtSigner()


def login(path: Path) -> JwtLogin:
    return JwtLogin("jwt", "kms", path, wall_clock=lambda: NOW)


def problem(path: Path) -> str:
    with pytest.raises(CredentialProblem) as info:
        login(path).login_request(None)  # type: ignore[arg-type]
    text = str(info.value)
    assert path.read_text().strip() not in text or not path.read_text().strip()
    return text


def jwt_file(tmp_path: Path, token: str) -> Path:
    return write_private(tmp_path / "jwt", token + "\n")


def claims_only(**claims: object) -> str:
    """An unsigned JWT with *claims*: only the provider's local checks look at it."""

    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def test_request_carries_role_and_the_jwt_as_read_now(tmp_path: Path, signer: JwtSigner) -> None:
    first = signer.sign(lifetime=3600)
    path = jwt_file(tmp_path, first)
    method = JwtLogin("jwt-k8s", "kms", path)
    assert method.login_request(None) == ("auth/jwt-k8s/login", {"role": "kms", "jwt": first})  # type: ignore[arg-type]
    second = signer.sign("other", lifetime=3600)
    write_private(path, second)
    assert method.login_request(None)[1]["jwt"] == second  # type: ignore[arg-type]


def test_expired_names_exp(tmp_path: Path) -> None:
    path = jwt_file(tmp_path, claims_only(exp=NOW - CLOCK_LEEWAY - 100))
    assert problem(path) == "JWT file holds a JWT that expired 130 s ago (claim exp)"


def test_expired_within_the_leeway_is_still_sent(tmp_path: Path) -> None:
    path = jwt_file(tmp_path, claims_only(exp=NOW - CLOCK_LEEWAY + MIN_REMAINING_LIFETIME + 1))
    login(path).check()


def test_about_to_expire_names_exp_and_says_what_to_do(tmp_path: Path) -> None:
    path = jwt_file(tmp_path, claims_only(exp=NOW - CLOCK_LEEWAY + 2))
    message = problem(path)
    assert "expires within 5 s (claim exp)" in message
    assert "refresh it sooner" in message


def test_not_yet_valid_names_nbf(tmp_path: Path) -> None:
    path = jwt_file(tmp_path, claims_only(nbf=NOW + 600, exp=NOW + 3600))
    assert problem(path) == "JWT file holds a JWT that is not valid for another 600 s (claim nbf)"


def test_nbf_within_the_leeway_is_accepted(tmp_path: Path) -> None:
    login(jwt_file(tmp_path, claims_only(nbf=NOW + CLOCK_LEEWAY - 1, exp=NOW + 60))).check()


def test_no_exp_is_left_to_openbao(tmp_path: Path) -> None:
    login(jwt_file(tmp_path, claims_only(sub="x"))).check()


@pytest.mark.parametrize("value", ["soon", True, [1], {"a": 1}])
def test_exp_that_is_not_a_number(tmp_path: Path, value: object) -> None:
    path = jwt_file(tmp_path, claims_only(exp=value))
    assert problem(path) == "JWT file holds a JWT whose claim exp is not a number"


def test_nbf_that_is_not_a_number(tmp_path: Path) -> None:
    path = jwt_file(tmp_path, claims_only(nbf="yesterday"))
    assert problem(path) == "JWT file holds a JWT whose claim nbf is not a number"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("TOPSECRET-not-a-jwt", "does not hold a JWT (three dot-separated parts)"),
        ("a.b.c.d", "does not hold a JWT (three dot-separated parts)"),
        ("a..c", "does not hold a JWT (three dot-separated parts)"),
        ("eyJhbGciOiJSUzI1NiJ9.!!!.c2ln", "payload is not base64url JSON"),
        ("eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln", "payload is not base64url JSON"),
        ("eyJhbGciOiJSUzI1NiJ9.WzEsMl0.c2ln", "payload is not a JSON object"),
    ],
)
def test_malformed(tmp_path: Path, content: str, message: str) -> None:
    assert message in problem(jwt_file(tmp_path, content))


def test_a_real_signed_jwt_passes_on_the_real_clock(tmp_path: Path, signer: JwtSigner) -> None:
    path = jwt_file(tmp_path, signer.sign(lifetime=120))
    JwtLogin("jwt", "kms", path, wall_clock=time.time).check()
