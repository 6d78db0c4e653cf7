"""Rotating the Transit key under load, on one node and on three, against real OpenBao.

The rotation is done the way operators do it, ``bao write -f <mount>/keys/kms/rotate`` with the
real CLI. What must hold: the new version is pending (decryptable) before it is active;
Status changes key_id exactly once and never back; every Encrypt's key_id is the key_id
Status reported around it; ciphertexts of every older version still decrypt; three nodes
with three state files converge on the same key_id. The time from the rotate command to the
new key_id in Status is measured and printed (``-s`` shows it).
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest

from _support import wait_for
from _support.rotation_nodes import Node, bao_rotate
from _support.serve_process import ServeProcess
from bao_kms.embedded import EmbeddedOpenBao

pytestmark = pytest.mark.openbao


@pytest.fixture
def nodes(
    openbao: EmbeddedOpenBao, socket_dir: Path, fresh_key: Callable[..., tuple[str, str]]
) -> Iterator[Callable[..., list[Node]]]:
    """Factory: *count* stopped nodes on one new key (the mount is returned by node.mount)."""
    made: list[Node] = []

    def make(count: int = 1) -> list[Node]:
        mount, _ = fresh_key()
        group = [Node(openbao, socket_dir, f"n{len(made) + i}", mount) for i in range(count)]
        made.extend(group)
        return group

    yield make
    for node in made:
        node.stop()


class Client(threading.Thread):
    """Encrypts and decrypts in a loop, checking each Encrypt against Status around it."""

    def __init__(self, node: Node) -> None:
        super().__init__(daemon=True)
        self.node = node
        self.stop = threading.Event()
        self.written: list[tuple[bytes, bytes, str, dict[str, bytes]]] = []
        self.status_ids: list[str] = []
        self.problems: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            before = self.node.status()[1]
            plaintext = os.urandom(32)
            try:
                answer = self.node.kms.encrypt(plaintext)
            except grpc.RpcError as error:
                self.problems.append(f"encrypt failed: {error.code()}")
                continue
            after = self.node.status()[1]
            for key_id in (before, after):
                if not self.status_ids or self.status_ids[-1] != key_id:
                    self.status_ids.append(key_id)
            if answer.key_id not in (before, after) or (
                before == after and answer.key_id != before
            ):
                self.problems.append("Encrypt's key_id is not the one Status reported")
            annotations = dict(answer.annotations)
            self.written.append((plaintext, answer.ciphertext, answer.key_id, annotations))
            again = self.node.kms.decrypt(answer.ciphertext, answer.key_id, annotations)
            if again.plaintext != plaintext:
                self.problems.append("a round trip returned other bytes")


def test_rotation_under_load_is_pending_then_active_with_one_key_id_change(
    nodes: Callable[..., list[Node]], openbao: EmbeddedOpenBao
) -> None:
    (node,) = nodes()
    node.start(stableObservations=3, activationDelay="1s")
    old = node.wait_key_id()
    client = Client(node)
    client.start()
    try:
        wait_for(lambda: len(client.written) > 5)
        rotated_at = bao_rotate(openbao, node.mount)
        # decryptable at once, not yet active: Status still names the old key_id
        wait_for(lambda: node.versions().get(2) == "pending", timeout=10, interval=0.01)
        assert node.status() == ("ok", old)
        new = node.wait_key_id(other_than=old)
        promoted_after = time.monotonic() - rotated_at
        assert node.versions() == {1: "retired", 2: "active"}
        assert promoted_after >= 1.0  # the activation delay was honoured
        wait_for(lambda: sum(key_id == new for *_, key_id, _ in client.written) > 5)
    finally:
        client.stop.set()
        client.join(10)
    assert client.problems == []
    assert client.status_ids == [old, new]  # exactly one change, never back
    assert {key_id for *_, key_id, _ in client.written} == {old, new}
    for plaintext, ciphertext, key_id, meta in client.written:
        assert node.kms.decrypt(ciphertext, key_id, meta).plaintext == plaintext


def test_three_nodes_with_three_state_files_converge(
    nodes: Callable[..., list[Node]], openbao: EmbeddedOpenBao
) -> None:
    group = nodes(3)
    for index, node in enumerate(group):
        node.start(stableObservations=2, activationDelay=f"{300 * index}ms")
    (old,) = {node.wait_key_id() for node in group}
    before = group[0].kms.encrypt(b"a" * 32)
    bao_rotate(openbao, group[0].mount)
    seen: dict[str, list[str]] = {node.name: [old] for node in group}

    def converged() -> bool:
        for node in group:
            key_id = node.status()[1]
            if key_id and key_id != seen[node.name][-1]:
                seen[node.name].append(key_id)
        return all(len(ids) == 2 for ids in seen.values())

    wait_for(converged, timeout=20, interval=0.01)
    new = seen[group[0].name][1]
    assert all(ids == [old, new] for ids in seen.values())
    assert len({node.provider.key_registry.location for node in group if node.provider}) == 3
    # what any node writes, every other node reads: old and new version alike
    after = group[2].kms.encrypt(b"b" * 32)
    assert after.key_id == new
    for node in group:
        for written, plaintext in ((before, b"a" * 32), (after, b"b" * 32)):
            answer = node.kms.decrypt(written.ciphertext, written.key_id, written.annotations)
            assert answer.plaintext == plaintext


def test_a_node_still_pending_reads_what_a_promoted_node_wrote(
    nodes: Callable[..., list[Node]], openbao: EmbeddedOpenBao
) -> None:
    fast, slow = nodes(2)
    fast.start()
    slow.start(stableObservations=1000, activationDelay="1h")
    old = slow.wait_key_id()
    bao_rotate(openbao, fast.mount)
    fast.wait_key_id(other_than=old)
    written = fast.kms.encrypt(b"c" * 32)
    assert slow.status() == ("ok", old)  # still pending there
    assert slow.kms.decrypt(written.ciphertext, written.key_id, written.annotations).plaintext


def test_time_from_rotate_to_new_key_id_in_status(
    nodes: Callable[..., list[Node]], openbao: EmbeddedOpenBao
) -> None:
    """Test settings: 1 observation, 0s delay, 200 ms probes. The default settings' figure
    is computed from the same parts (see docs/rotation.md)."""
    (node,) = nodes()
    node.start()
    key_id = node.wait_key_id()
    latencies = []
    for _ in range(5):
        rotated_at = bao_rotate(openbao, node.mount)
        key_id = node.wait_key_id(other_than=key_id)
        latencies.append(time.monotonic() - rotated_at)
    print(
        f"\nrotate -> new key_id in Status (probeInterval 200ms, 1 observation, 0s delay): "
        f"median {statistics.median(latencies) * 1000:.0f} ms, "
        f"max {max(latencies) * 1000:.0f} ms over {len(latencies)} rotations"
    )
    assert max(latencies) < 0.2 + 1.0  # one probe interval plus a generous margin


def test_three_serve_processes_with_three_state_files_converge(
    nodes: Callable[..., list[Node]], openbao: EmbeddedOpenBao, socket_dir: Path
) -> None:
    """The same as above with three real ``serve`` processes, as on three control-plane nodes:
    nothing shared but OpenBao and the config's labels; each holds its own state file lock."""
    group = nodes(3)
    processes: list[ServeProcess] = []
    try:
        for node in group:
            document = node.document()
            document["rotation"] = {"stableObservations": 2, "activationDelay": "0s"}
            workdir = socket_dir / f"proc-{node.name}"
            workdir.mkdir()
            processes.append(ServeProcess(document, workdir))
        for process in processes:
            process.wait_healthy()
        (old,) = {process.client.status().key_id for process in processes}
        before = processes[0].client.encrypt(b"a" * 32)
        bao_rotate(openbao, group[0].mount)
        seen: dict[int, list[str]] = {index: [old] for index in range(3)}

        def converged() -> bool:
            for index, process in enumerate(processes):
                key_id = process.client.status().key_id
                if key_id and key_id != seen[index][-1]:
                    seen[index].append(key_id)
            return all(len(ids) == 2 for ids in seen.values())

        wait_for(converged, timeout=30, interval=0.02)
        new = seen[0][1]
        assert new != old and all(ids == [old, new] for ids in seen.values())
        after = processes[2].client.encrypt(b"b" * 32)
        assert after.key_id == new
        for process in processes:
            for written, plaintext in ((before, b"a" * 32), (after, b"b" * 32)):
                answer = process.client.decrypt(
                    written.ciphertext, written.key_id, written.annotations
                )
                assert answer.plaintext == plaintext
        assert len({node.state_path for node in group}) == 3
        assert all(node.state_path.exists() for node in group)
    finally:
        for process in processes:
            process.stop()
