"""The fault matrix, the key and the provider's own state: the Transit key deleted and
re-created, ``disable_upsert`` turned off, and the version registry file lost or edited.

Each test has its own Transit mount on the session's dev server (``fresh_key``). The registry
faults run a node with ``state.path`` set (:class:`_support.rotation_nodes.Node`), and recover
with what docs/rotation.md tells an operator to do.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from _support.fault_table import FAULTS
from _support.faults import (
    OPENBAO,
    PROBES,
    Matrix,
    Measured,
    MeasureFault,
    check_seen,
    decrypt_code,
    observe,
    wait_unhealthy,
    write_objects,
)
from _support.rotation_nodes import Node
from bao_kms.embedded import EmbeddedOpenBao

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(60)]


def test_key_deleted_and_recreated_fails_closed(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    matrix: Matrix,
) -> None:
    expectation = FAULTS["key_deleted_recreated"]
    mount, key = fresh_key()
    created = time.monotonic()
    running = fault_provider(mount=mount, key=key)
    client, address = running.client, running.provider.ops.addresses["/ready"]
    stored = write_objects(client)

    started = time.monotonic()
    openbao.api("POST", f"{mount}/keys/{key}/config", {"deletion_allowed": True})
    wait_unhealthy(client, stored, required=["key_deletion_allowed"])
    openbao.api("DELETE", f"{mount}/keys/{key}")
    wait_unhealthy(client, stored, required=["openbao_not_found"])
    deleted = observe(client, stored, address)
    # creation times have one-second resolution: the new key must not share the old one's
    time.sleep(max(0.0, created + 1.1 - time.monotonic()))
    openbao.setup_transit(mount, key)  # the same name, new key material
    recreated = time.monotonic()
    wait_unhealthy(client, stored, required=expectation.reasons)
    detected = time.monotonic() - recreated
    check_seen(expectation, observe(client, stored, address))
    # fails closed for good: no old object ever decrypts (to anything), Status never turns ok
    codes = {decrypt_code(client, item) for item in stored}
    assert codes <= set(expectation.decrypt), codes
    time.sleep(1.5)  # three probe rounds
    assert client.status().healthz != "ok"
    matrix.record(
        expectation.name,
        Measured(
            detected,
            None,
            f"deleted: Status {deleted.healthz}, Encrypt {deleted.encrypt.name}, Decrypt "
            f"{deleted.decrypt.name}; re-created: old objects "
            f"{'/'.join(sorted(code.name for code in codes))}; "
            f"{time.monotonic() - started:.1f} s watched, never ok",
        ),
    )


def test_soft_deleted_key_then_restored(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    measure_fault: MeasureFault,
) -> None:
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)
    measure_fault(
        "key_soft_deleted",
        running.client,
        running.provider,
        cause=lambda: openbao.api("DELETE", f"{mount}/keys/{key}/soft-delete"),
        clear=lambda: openbao.api("POST", f"{mount}/keys/{key}/soft-delete-restore"),
    )


def test_disable_upsert_turned_off_then_on(
    openbao: EmbeddedOpenBao,
    fresh_key: Callable[..., tuple[str, str]],
    fault_provider: Callable[..., Any],
    measure_fault: MeasureFault,
) -> None:
    mount, key = fresh_key()
    running = fault_provider(mount=mount, key=key)

    def upsert(disabled: bool) -> None:
        openbao.api("POST", f"{mount}/config/keys", {"disable_upsert": disabled})

    measure_fault(
        "upsert_enabled",
        running.client,
        running.provider,
        cause=lambda: upsert(False),
        clear=lambda: upsert(True),
    )


# --- the version registry file ---------------------------------------------------------------


class StateNode(Node):
    """A rotation test node with the matrix's probe intervals and OpenBao timeout."""

    def document(self) -> dict[str, Any]:
        document = super().document()
        document["status"] = PROBES
        document["openbao"].update(OPENBAO)
        return document


@pytest.fixture
def node(
    openbao: EmbeddedOpenBao, socket_dir: Path, fresh_key: Callable[..., tuple[str, str]]
) -> Iterator[StateNode]:
    """A started node on a new key, with its registry file at ``state.path``."""
    made = StateNode(openbao, socket_dir, "state", fresh_key()[0])
    try:
        made.start()
        yield made
    finally:
        made.stop()


def test_state_file_lost_then_rebuilt(
    node: StateNode, measure_fault: MeasureFault, capsys: pytest.CaptureFixture[str]
) -> None:
    def rebuild() -> None:
        code, plan = node.cli(capsys, "rebuild-state")
        assert code == 0, plan
        code, done = node.cli(
            capsys, "rebuild-state", "--apply", "--expected-state-hash", plan["state_hash"]
        )
        assert code == 0 and done["applied"], done

    assert node.provider is not None
    measure_fault(
        "state_lost",
        node.kms,
        node.provider,
        cause=node.state_path.unlink,
        clear=rebuild,
    )


def test_state_file_edited_then_put_back(node: StateNode, measure_fault: MeasureFault) -> None:
    original = node.state_path.read_bytes()
    document = orjson.loads(original)
    document["versions"]["1"]["state"] = "retired"  # a hand edit: the hash no longer matches

    assert node.provider is not None
    measure_fault(
        "state_edited",
        node.kms,
        node.provider,
        cause=lambda: node.state_path.write_bytes(orjson.dumps(document)),
        clear=lambda: node.state_path.write_bytes(original),
    )
