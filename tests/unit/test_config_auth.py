"""The ``auth`` section (a discriminated union on ``method``) and the Auth it builds.

Only ``token`` exists so far; the shape tests below hold for every method added later, so a
new method class that breaks the YAML contract (``method`` plus one block named after it)
fails here and at import.
"""

from __future__ import annotations

import typing
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from _support import FakeClock
from _support.config_documents import MARKER, minimal, refused, with_value, without
from bao_kms.config import AuthMethod, Config, TokenAuth, TokenAuthConfig, parse_config
from bao_kms.openbao.auth import Auth, TokenFileAuth
from bao_kms.openbao.auth.factory import build_auth


def _methods() -> dict[str, type[AuthMethod]]:
    """The union's members by method name, read from the model itself."""
    annotation = Config.model_fields["auth"].annotation
    members = typing.get_args(annotation) or (annotation,)
    return {member.method_name: member for member in members}


#: one valid ``auth`` section per method; a new method must add its own
EXAMPLES: dict[str, dict[str, Any]] = {
    "token": {"method": "token", "token": {"file": "/etc/bao-kms/token"}},
}


# --- the union's shape --------------------------------------------------------------------------


def test_every_method_has_an_example() -> None:
    assert set(_methods()) == set(EXAMPLES)


@pytest.mark.parametrize("method", EXAMPLES)
def test_each_method_is_a_tag_and_one_block_named_after_it(method: str) -> None:
    member = _methods()[method]
    assert issubclass(member, AuthMethod)
    assert set(member.model_fields) == {"method", method}
    block = member.model_fields[method].annotation
    assert isinstance(block, type) and issubclass(block, BaseModel)
    config = parse_config(with_value("auth", EXAMPLES[method]))
    assert isinstance(config.auth, member)
    assert config.auth.method == method


def test_a_method_class_without_its_block_fails_at_definition() -> None:
    with pytest.raises(TypeError, match="'kerberos' settings block"):

        class KerberosAuth(AuthMethod):
            method: Literal["kerberos"]
            keytab: TokenAuthConfig


def test_token_method_reads_the_file_path() -> None:
    config = parse_config(minimal())
    assert isinstance(config.auth, TokenAuth)
    assert config.auth.token == TokenAuthConfig(file=Path("/etc/bao-kms/token"))


def test_method_may_be_omitted_for_token() -> None:
    """Configs written before there was a choice of method keep loading."""
    config = parse_config(without("auth.method"))
    assert isinstance(config.auth, TokenAuth)


def test_dumped_auth_names_its_method_and_loads_again() -> None:
    config = parse_config(without("auth.method"))
    dumped = config.model_dump(mode="json", by_alias=True)
    assert dumped["auth"] == {"method": "token", "token": {"file": "/etc/bao-kms/token"}}
    assert parse_config(dumped) == config


# --- refusals name the YAML path ----------------------------------------------------------------


@pytest.mark.parametrize("method", ["kubernetes", f"{MARKER}", "", "Token", None, 5, [MARKER]])
def test_unknown_method_lists_the_supported_ones_without_echoing(method: Any) -> None:
    message = refused(with_value("auth.method", method))
    assert "auth.method: is not supported; must be one of: token" in message
    assert MARKER not in message


def test_token_method_without_token_file_refused() -> None:
    message = refused(without("auth.token"))
    assert "auth: method token needs token.file" in message


def test_token_without_file_refused() -> None:
    assert "auth.token.file" in refused(with_value("auth.token", {}))


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("auth.token.file", 5, "auth.token.file:"),
        ("auth.token.bogusKey", "x", "auth.token.bogusKey: unknown key"),
        ("auth.token", "/etc/token", "auth.token: must be a mapping"),
        ("auth.approle", {"roleIdFile": "/r"}, "auth.approle: unknown key"),
    ],
)
def test_problems_inside_the_method_name_the_path_as_written(
    path: str, value: Any, expected: str
) -> None:
    """pydantic puts the chosen tag into error locations (auth.token.token.file); not here."""
    message = refused(with_value(path, value))
    assert expected in message
    assert "token.token" not in message


@pytest.mark.parametrize("value", [f"{MARKER}", [MARKER], None, 7])
def test_auth_must_be_a_mapping(value: Any) -> None:
    message = refused(with_value("auth", value))
    assert "auth: must be a mapping" in message
    assert MARKER not in message


# --- build_auth ---------------------------------------------------------------------------------


@pytest.mark.parametrize("method", EXAMPLES)
def test_build_auth_gives_an_auth_for_every_method(method: str) -> None:
    config = parse_config(with_value("auth", EXAMPLES[method]))
    assert isinstance(build_auth(config.auth, clock=FakeClock()), Auth)


def test_build_auth_token_reads_the_configured_file_on_the_given_clock(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("s.first\n")
    clock = FakeClock()
    config = parse_config(with_value("auth.token.file", str(token_file)))
    auth = build_auth(config.auth, clock=clock)
    assert isinstance(auth, TokenFileAuth)
    assert auth.path == str(token_file)
    assert auth.token() == "s.first"
    token_file.write_text("s.second-longer\n")
    assert auth.token() == "s.first"  # the stat is trusted until the injected clock moves
    clock.advance(5)
    assert auth.token() == "s.second-longer"
