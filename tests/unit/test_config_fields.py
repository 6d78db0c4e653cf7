"""Config field types: durations, socket mode/path/group, addresses, labels, OpenBao paths.

Each refusal names the field path; labels and namespaces are refused without being echoed.
"""

from __future__ import annotations

from typing import Any

import pytest

from _support.config_documents import IDENTITY_FIELDS, MARKER, refused, with_value
from bao_kms.config import format_duration, parse_config, parse_duration

# --- durations ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("2s", 2.0), ("5m", 300.0), ("1h", 3600.0), ("1.5s", 1.5), ("250ms", 0.25)],
)
def test_duration_forms_accepted(text: str, seconds: float) -> None:
    config = parse_config(with_value("status.deepProbeInterval", text))
    assert config.status.deep_probe_interval == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.5, "500ms"),
        (1.5, "1500ms"),
        (2.0, "2s"),
        (90.0, "90s"),
        (300.0, "5m"),
        (7200.0, "2h"),
        (0.0005, "0.5ms"),  # not rounded to a whole millisecond (which would read as zero)
        (0.0025, "2.5ms"),
    ],
)
def test_format_duration_is_the_inverse_of_parse(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("value", [10, "10", "0ms", None])
def test_parse_duration_message_does_not_echo_the_value(value: Any) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(value)
    assert str(value) not in str(info.value)


@pytest.mark.parametrize("value", ["10", 10, 2.5, "2 s", "-1s", "abc", "1d", "", "s", "2S", "0s"])
def test_bad_duration_refused_with_field_named(value: Any) -> None:
    message = refused(with_value("openbao.timeout", value))
    assert "openbao" in message and "timeout" in message


@pytest.mark.parametrize(
    "path",
    [
        "server.gracePeriod",
        "status.probeInterval",
        "status.deepProbeInterval",
        "status.maxStaleness",
    ],
)
def test_every_duration_field_refuses_bare_numbers(path: str) -> None:
    assert path in refused(with_value(path, "10"))


# --- socket -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "mode"), [("0660", 0o660), ("0640", 0o640), ("0600", 0o600)])
def test_socket_mode_accepted(text: str, mode: int) -> None:
    assert parse_config(with_value("server.socketMode", text)).server.socket_mode == mode


@pytest.mark.parametrize(
    "value",
    ["0666", "0662", "0777", "0999", "0668", 660, 0o660, "rw-rw----", "", "0x1b0"],
)
def test_bad_socket_mode_refused(value: Any) -> None:
    assert "server.socketMode" in refused(with_value("server.socketMode", value))


def test_world_writable_socket_mode_says_why() -> None:
    assert "world-writable" in refused(with_value("server.socketMode", "0666"))


@pytest.mark.parametrize("value", ["kms.sock", "run/kms.sock", "./kms.sock", ""])
def test_relative_socket_path_refused(value: str) -> None:
    message = refused(with_value("server.socketPath", value))
    assert "server" in message and "socketPath" in message


@pytest.mark.parametrize(
    ("path", "value"),
    [("server.socketPath", "kms.sock"), ("openbao.namespace", "a b"), ("openbao.timeout", "0s")],
)
def test_model_level_check_names_the_dotted_field_path(path: str, value: str) -> None:
    assert path in refused(with_value(path, value))


# --- addresses ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("http://127.0.0.1:8200", "http://127.0.0.1:8200"),
        ("https://bao.example.com", "https://bao.example.com"),
        ("https://bao.example.com:8200/", "https://bao.example.com:8200"),
        ("http://[::1]:8200", "http://[::1]:8200"),
    ],
)
def test_address_accepted(given: str, kept: str) -> None:
    document = with_value("openbao.addresses", [given, "https://other:8200"])
    document["openbao"]["allowInsecureHttp"] = True
    assert parse_config(document).openbao.addresses == [kept, "https://other:8200"]


@pytest.mark.parametrize(
    "address",
    [
        "https://bao.example.com/v1",
        "https://bao.example.com:8200/v1/sys",
        "https://bao.example.com?x=1",
        "https://bao.example.com/?x=1",
        "https://bao.example.com#frag",
        "ftp://bao.example.com",
        "bao.example.com:8200",
        "https://",
        "https://bao example.com",
        "",
    ],
)
def test_bad_address_refused(address: str) -> None:
    assert "openbao.addresses" in refused(
        with_value("openbao.addresses", ["https://good:8200", address])
    )


@pytest.mark.parametrize(
    "address",
    [
        "http://user:secret@bao.example.com:8200",
        "http://:8200",
        "http://bao.example.com:abc",
        "http://bao.example.com:99999",
    ],
)
def test_address_is_host_and_port_only(address: str) -> None:
    assert "openbao.addresses" in refused(with_value("openbao.addresses", [address]))


@pytest.mark.parametrize("address", ["https://a..b:8200", f"https://{'x' * 64}.example:8200"])
def test_an_address_whose_host_cannot_be_a_dns_name_is_refused(address: str) -> None:
    # connecting would fail on every request (IDNA refuses empty and over-long labels)
    assert "not a valid DNS name" in refused(with_value("openbao.addresses", [address]))


def test_empty_address_list_refused() -> None:
    assert "openbao.addresses" in refused(with_value("openbao.addresses", []))


# --- identity labels ----------------------------------------------------------------------------


BAD_LABELS = {
    "empty": "",
    "space": f"{MARKER} cluster",
    "leading-space": f" {MARKER}",
    "tab": f"{MARKER}\tcluster",
    "newline": f"{MARKER}\ncluster",
    "nbsp": f"{MARKER}\u00a0cluster",
    "line-separator": f"{MARKER}\u2028cluster",
    "bell": f"{MARKER}\x07cluster",
    "nul": f"{MARKER}\x00cluster",
    "del": f"{MARKER}\x7fcluster",
    "zero-width-space": f"{MARKER}\u200bcluster",
    "zero-width-joiner": f"{MARKER}\u200dcluster",
    "bom": f"\ufeff{MARKER}",
    "rtl-override": f"{MARKER}\u202ecluster",
    "non-nfc": f"{MARKER}-cluste\u0301r",
    "decomposed-umlaut": f"{MARKER}-clu\u0308ster",
    "too-long": MARKER + "x" * (257 - len(MARKER)),
}


@pytest.mark.parametrize("field", IDENTITY_FIELDS)
@pytest.mark.parametrize("label", BAD_LABELS.values(), ids=BAD_LABELS.keys())
def test_bad_identity_label_refused_without_echoing_it(field: str, label: str) -> None:
    message = refused(with_value(f"identity.{field}", label))
    assert f"identity.{field}" in message
    assert MARKER not in message
    if label:
        assert label not in message


@pytest.mark.parametrize(
    "label", ["clüster-ä", "集群-1", "01HXEXAMPLEKEYLINEAGEID", "a", "x" * 256, "bao.prod_a-1/x"]
)
def test_good_identity_label_accepted(label: str) -> None:
    for field in IDENTITY_FIELDS:
        config = parse_config(with_value(f"identity.{field}", label))
        assert getattr(config.identity, _snake(field)) == label


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


@pytest.mark.parametrize(
    "label", [BAD_LABELS["space"], BAD_LABELS["zero-width-space"], BAD_LABELS["non-nfc"]]
)
def test_bad_namespace_refused_without_echoing_it(label: str) -> None:
    message = refused(with_value("openbao.namespace", label))
    assert "namespace" in message
    assert MARKER not in message


@pytest.mark.parametrize("namespace", ["team-a", "team-a/child", "ns_1.prod"])
def test_normal_namespace_accepted(namespace: str) -> None:
    assert parse_config(with_value("openbao.namespace", namespace)).openbao.namespace == namespace


@pytest.mark.parametrize("namespace", ["team-ä", "团队", "a//b", "../x", "a/"])
def test_namespace_must_be_a_plain_openbao_path(namespace: str) -> None:
    """It travels as the X-Vault-Namespace header, so it must be plain ASCII path segments."""
    assert "openbao.namespace" in refused(with_value("openbao.namespace", namespace))


# --- transit paths, bounds, plain http, socket group -----------------------------------------


@pytest.mark.parametrize("path", ["transit.mountPath", "transit.keyName"])
@pytest.mark.parametrize("value", ["a/../b", "..", "/transit", "transit/", "a b", "", "a?b"])
def test_bad_transit_path_refused(path: str, value: str) -> None:
    assert path in refused(with_value(path, value))


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("openbao.timeout", "2m"),
        ("openbao.timeout", "5ms"),
        ("status.probeInterval", "50ms"),
        ("status.probeInterval", "2h"),
        ("status.deepProbeInterval", "99999999999h"),
        ("server.gracePeriod", "10m"),
    ],
)
def test_durations_are_bounded(path: str, value: str) -> None:
    message = refused(with_value(path, value))
    assert path in message and "between" in message


@pytest.mark.parametrize(
    "address",
    [
        "http://127.0.0.1:8200",
        "http://localhost:8200",
        "http://[::1]:8200",
        "http://bao.example.com:8200",
    ],
)
def test_plain_http_needs_allow_insecure_http_even_to_loopback(address: str) -> None:
    """Whatever binds OpenBao's loopback port while OpenBao is down would get the token and
    could answer Decrypt with any plaintext: plain http is the operator's explicit choice."""
    message = refused(with_value("openbao.addresses", [address]))
    assert "openbao" in message and "allowInsecureHttp" in message and "clear text" in message
    document = with_value("openbao.addresses", [address])
    document["openbao"]["allowInsecureHttp"] = True
    assert parse_config(document).openbao.allow_insecure_http is True


@pytest.mark.parametrize("group", ["kube", "kube-apiserver", "_svc", "1000", "0"])
def test_socket_group_forms_accepted(group: str) -> None:
    assert parse_config(with_value("server.socketGroup", group)).server.socket_group == group


@pytest.mark.parametrize("group", ["²", "4294967295", "a b", "", "-x", "x" * 40])
def test_socket_group_forms_refused(group: str) -> None:
    assert "server.socketGroup" in refused(with_value("server.socketGroup", group))


@pytest.mark.parametrize(
    "address",
    [
        "HTTP://bao.example.com:8200",
        "Http://10.0.0.5:8200",
        "http://127.evil.example:8200",
        "http://localhost.evil.example:8200",
        "http://0.0.0.0:8200",
    ],
)
def test_plain_http_check_is_not_fooled_by_spelling(address: str) -> None:
    assert "clear text" in refused(with_value("openbao.addresses", [address]))


@pytest.mark.parametrize("address", ["http://127.0.0.2:8200", "HTTP://[::1]:8200"])
def test_plain_http_to_loopback_in_any_spelling_needs_the_flag(address: str) -> None:
    assert "allowInsecureHttp" in refused(with_value("openbao.addresses", [address]))
