"""``doctor`` against real OpenBao: passes a healthy node, names the check that fails.

Every case builds its own Transit mount on the session's dev server (``fresh_key``), so a
key made unsafe for one test never touches another. The last test goes from nothing to a
passing doctor the way an operator would: ``init``, the generated set-up script run with the
real ``bao`` CLI, then ``doctor`` on what they produced.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from _support import GOLDEN_IDENTITY
from _support.openbao_servers import TlsDevOpenBao
from bao_kms.cli.main import main
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.manifests import Phase, encryption_configuration, openbao_policy

pytestmark = pytest.mark.openbao


class Node:
    """A config, token file and socket directory for one doctor run."""

    def __init__(self, directory: Path, server: EmbeddedOpenBao, mount: str) -> None:
        self.directory = directory
        self.server = server
        self.mount = mount
        self.token_file = directory / "token"
        self.config_file = directory / "config.yaml"
        self.socket_path = directory / "kms.sock"
        self.ca_file: Path | None = None

    def token(self, value: str) -> Node:
        self.token_file.write_text(value + "\n")
        self.token_file.chmod(0o600)
        return self

    def least_privilege_token(self) -> Node:
        policy = openbao_policy(self.mount, "kms")
        return self.token(self.server.create_token(policy, f"doctor-{self.mount}"))

    def write_config(self) -> Path:
        openbao: dict[str, Any] = {
            "addresses": [self.server.address],
            "timeout": "2s",
            "allowInsecureHttp": self.server.scheme == "http",
        }
        if self.ca_file is not None:
            openbao["caFile"] = str(self.ca_file)
        document = {
            "server": {"socketPath": str(self.socket_path)},
            "openbao": openbao,
            "auth": {"method": "token", "token": {"file": str(self.token_file)}},
            "identity": GOLDEN_IDENTITY,
            "transit": {"mountPath": self.mount, "keyName": "kms"},
            "status": {"probeInterval": "1s", "deepProbeInterval": "1m", "maxStaleness": "10s"},
        }
        self.config_file.write_text(yaml.safe_dump(document))
        return self.config_file


Doctor = Callable[..., tuple[int, dict[str, dict[str, str]]]]


@pytest.fixture
def doctor(capsys: pytest.CaptureFixture[str]) -> Doctor:
    """Run ``doctor --output json``; returns (exit code, findings by check name)."""

    def run(node: Node, *extra: str) -> tuple[int, dict[str, dict[str, str]]]:
        capsys.readouterr()
        config = node.write_config()
        code = main(["doctor", "--config", str(config), "--output", "json", *extra])
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is (code == 0)
        return code, {check["name"]: check for check in report["checks"]}

    return run


@pytest.fixture
def node(
    socket_dir: Path, openbao: EmbeddedOpenBao, fresh_key: Callable[..., tuple[str, str]]
) -> Callable[..., Node]:
    def make(**key_setup: Any) -> Node:
        mount, _ = fresh_key(**key_setup)
        return Node(socket_dir, openbao, mount)

    return make


def statuses(findings: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: finding["status"] for name, finding in findings.items()}


def test_a_healthy_node_with_a_least_privilege_token_passes_every_check(
    node: Callable[..., Node], doctor: Doctor
) -> None:
    healthy = node().least_privilege_token()
    phase = healthy.directory / "encryption-config.yaml"
    phase.write_text(
        encryption_configuration(
            GOLDEN_IDENTITY["providerName"], str(healthy.socket_path), phase=Phase.FINAL
        )
    )
    code, findings = doctor(healthy, "--encryption-config", str(phase))
    assert code == 0
    assert statuses(findings) == {
        "config": "pass",
        "files": "pass",
        "socket": "pass",
        "key_registry": "warn",  # no state.path: persistence is off
        "openbao_reachable": "pass",
        "auth": "pass",
        "token_capabilities": "pass",
        "key_profile": "pass",
        "round_trip": "pass",
        "encryption_config": "pass",
    }
    assert findings["round_trip"]["message"].startswith("Status ok, Encrypt and Decrypt agree")
    assert not healthy.socket_path.exists()  # the round trip ran on its own temporary socket
    token = healthy.token_file.read_text().strip()
    assert all(token not in finding["message"] for finding in findings.values())


def test_a_root_token_warns_but_passes(
    node: Callable[..., Node], doctor: Doctor, openbao: EmbeddedOpenBao
) -> None:
    code, findings = doctor(node().token(openbao.root_token))
    assert code == 0
    assert findings["token_capabilities"]["status"] == "warn"
    assert "root token" in findings["token_capabilities"]["message"]
    assert findings["round_trip"]["status"] == "pass"


@pytest.mark.parametrize(
    ("setup", "reason"),
    [
        ({"key_options": {"deletion_allowed": True}}, "key_deletion_allowed"),
        ({"disable_upsert": False}, "mount_upsert_enabled"),
    ],
    ids=["deletion_allowed", "upsert"],
)
def test_an_unsafe_key_fails_the_key_profile(
    node: Callable[..., Node], doctor: Doctor, setup: dict[str, Any], reason: str
) -> None:
    code, findings = doctor(node(**setup).least_privilege_token())
    assert code == 4
    assert findings["key_profile"]["status"] == "fail"
    assert reason in findings["key_profile"]["message"]
    assert "round_trip" not in findings  # it would only repeat the key's failure


def test_a_bad_token_fails_auth(node: Callable[..., Node], doctor: Doctor) -> None:
    code, findings = doctor(node().token("s.not-a-valid-token-at-all"))
    assert code == 4
    assert findings["openbao_reachable"]["status"] == "pass"
    assert findings["auth"]["status"] == "fail"
    assert "not-a-valid-token" not in findings["auth"]["message"]
    assert list(findings)[-1] == "auth"


def test_an_encryption_config_naming_another_socket_fails(
    node: Callable[..., Node], doctor: Doctor
) -> None:
    healthy = node().least_privilege_token()
    phase = healthy.directory / "encryption-config.yaml"
    phase.write_text(
        encryption_configuration(
            GOLDEN_IDENTITY["providerName"], "/run/elsewhere/kms.sock", phase=Phase.FINAL
        )
    )
    code, findings = doctor(healthy, "--encryption-config", str(phase))
    assert code == 4
    assert findings["encryption_config"]["status"] == "fail"
    assert "unix:///run/elsewhere/kms.sock" in findings["encryption_config"]["message"]
    assert findings["round_trip"]["status"] == "pass"


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_openbao() -> Iterator[TlsDevOpenBao]:
    with TlsDevOpenBao() as server:
        server.setup_transit("transit", "kms")
        yield server


def unrelated_ca(path: Path) -> Path:
    """A valid CA certificate that never signed anything OpenBao serves."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not the OpenBao CA")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return path


def test_tls_with_the_right_ca_passes(
    socket_dir: Path, tls_openbao: TlsDevOpenBao, doctor: Doctor
) -> None:
    tls = Node(socket_dir, tls_openbao, "transit").least_privilege_token()
    tls.ca_file = tls_openbao.ca_file
    code, findings = doctor(tls)
    assert code == 0, findings
    assert findings["openbao_reachable"]["message"] == f"{tls_openbao.address}: ok"


def test_a_wrong_ca_fails_reachability(
    socket_dir: Path, tls_openbao: TlsDevOpenBao, doctor: Doctor
) -> None:
    tls = Node(socket_dir, tls_openbao, "transit").least_privilege_token()
    tls.ca_file = unrelated_ca(socket_dir / "wrong-ca.pem")
    code, findings = doctor(tls)
    assert code == 4
    assert findings["openbao_reachable"]["status"] == "fail"
    assert "TLS" in findings["openbao_reachable"]["message"]
    assert list(findings)[-1] == "openbao_reachable"


# --- from nothing, as an operator would ---------------------------------------------------------


def test_init_then_the_setup_script_then_doctor_passes(
    tmp_path: Path, socket_dir: Path, openbao: EmbeddedOpenBao, doctor: Doctor
) -> None:
    out = tmp_path / "out"
    values = {
        "addresses": [openbao.address],
        "allowInsecureHttp": True,
        "caFile": None,
        "socketPath": str(socket_dir / "kms.sock"),
        "auth": {"method": "token", "token": {"file": str(socket_dir / "token")}},
        "mountPath": "transit-init",
        "configPath": str(out / "config.yaml"),
    }
    values_file = tmp_path / "values.yaml"
    values_file.write_text(yaml.safe_dump(values))
    assert main(["init", "--out", str(out), "--values", str(values_file)]) == 0
    environment = {
        **os.environ,
        "BAO_ADDR": openbao.address,
        "BAO_TOKEN": openbao.root_token,
        "OUT": str(socket_dir),
        "PATH": f"{Path(openbao.binary).parent}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path),  # the bao CLI's token helper must not touch the real home
    }
    setup = subprocess.run(
        ["bash", str(out / "openbao-setup.sh")],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert setup.returncode == 0, setup.stderr
    assert (socket_dir / "token").stat().st_mode & 0o777 == 0o600
    # run twice: an existing mount and key are kept, the profile re-applied
    again = subprocess.run(
        ["bash", str(out / "openbao-setup.sh")],
        env={**environment, "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert again.returncode == 0, again.stderr

    class Generated(Node):
        def write_config(self) -> Path:
            return out / "config.yaml"

    generated = Generated(socket_dir, openbao, "transit-init")
    code, findings = doctor(generated, "--encryption-config", str(out / Phase.FINAL.filename))
    assert code == 0, findings
    assert set(statuses(findings).values()) == {"pass"}


def test_doctor_beside_a_running_provider_uses_ports_of_its_own(
    node: Callable[..., Node], doctor: Doctor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The runbooks run doctor on a node whose provider is serving: its health and metrics
    ports are taken. The round trip must not try to listen on them."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        monkeypatch.setenv("BAO_KMS_HEALTH_ADDRESS", address)
        monkeypatch.setenv("BAO_KMS_METRICS_ADDRESS", address)
        code, findings = doctor(node().least_privilege_token())
    assert findings["round_trip"]["status"] == "pass", findings["round_trip"]
    assert code == 0
