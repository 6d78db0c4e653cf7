"""The generated stubs are exactly what proto/kms/v2/api.proto produces, and speak ``v2``."""

from __future__ import annotations

import importlib.util
from pathlib import Path

from bao_kms._proto import api_pb2

ROOT = Path(__file__).resolve().parents[1]
GENERATED = ("api_pb2.py", "api_pb2.pyi", "api_pb2_grpc.py")


def _generator():
    spec = importlib.util.spec_from_file_location("proto_generate", ROOT / "proto" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_regenerating_the_stubs_changes_nothing(tmp_path):
    _generator().generate(tmp_path)
    for name in GENERATED:
        fresh = (tmp_path / "bao_kms" / "_proto" / name).read_bytes()
        committed = (ROOT / "src" / "bao_kms" / "_proto" / name).read_bytes()
        assert fresh == committed, f"{name} is stale: run python proto/generate.py"


def test_contract_names_and_field_numbers():
    service = api_pb2.DESCRIPTOR.services_by_name["KeyManagementService"]
    assert service.full_name == "v2.KeyManagementService"
    assert [m.name for m in service.methods] == ["Status", "Encrypt", "Decrypt"]
    expected = {
        "StatusResponse": {"version": 1, "healthz": 2, "key_id": 3},
        "EncryptRequest": {"plaintext": 1, "uid": 2},
        "EncryptResponse": {"ciphertext": 1, "key_id": 2, "annotations": 3},
        "DecryptRequest": {"ciphertext": 1, "uid": 2, "key_id": 3, "annotations": 4},
        "DecryptResponse": {"plaintext": 1},
        "StatusRequest": {},
    }
    for message, fields in expected.items():
        descriptor = api_pb2.DESCRIPTOR.message_types_by_name[message]
        assert {f.name: f.number for f in descriptor.fields} == fields
