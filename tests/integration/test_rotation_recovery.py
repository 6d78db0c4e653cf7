"""Restarts, damaged state, a rewritten key and the operator's commands, against real OpenBao.

Each test runs one or two nodes (in-process providers with their own state files) through
what happens to real control planes: a restart while a version is pending or after it was
promoted, a registry deleted or edited by hand, the key deleted and re-created or rolled back
from a backup, and ``retire-versions`` / ``restore-versions`` / ``rebuild-state`` with the
expected-hash guard. Failing closed means: Status names the reason, Encrypt is refused, and no
Decrypt ever returns the wrong plaintext.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import orjson
import pytest

from _support import wait_for
from _support.rotation_nodes import Node, bao_rotate
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.keys.registry import StateLocked

pytestmark = pytest.mark.openbao
Code = grpc.StatusCode


@pytest.fixture
def node(
    openbao: EmbeddedOpenBao, socket_dir: Path, fresh_key: Callable[..., tuple[str, str]]
) -> Iterator[Callable[..., Node]]:
    """Factory: a stopped node on a new key, or on *mount* (a second node on the same key)."""
    made: list[Node] = []

    def make(mount: str | None = None, **key_setup: object) -> Node:
        made.append(Node(openbao, socket_dir, f"r{len(made)}", mount or fresh_key(**key_setup)[0]))
        return made[-1]

    yield make
    for each in made:
        each.stop()


def refused(call: Callable[[], object]) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as info:
        call()
    code: grpc.StatusCode = info.value.code()
    return code


def test_a_restart_during_pending_keeps_status_and_decrypts_the_pending_version(node, openbao):
    pending = node()
    pending.start(stableObservations=1000, activationDelay="1h")
    old = pending.wait_key_id()
    bao_rotate(openbao, pending.mount)
    wait_for(lambda: pending.versions().get(2) == "pending")
    pending.stop()
    writer = node(pending.mount)
    writer.persistent = False  # a node without a registry trusts live metadata: v2 active
    writer.start()
    written = writer.kms.encrypt(b"p" * 32)
    assert written.key_id != old
    pending.start()  # restarted, same slow settings
    assert pending.status() == ("ok", old) and pending.versions()[2] == "pending"
    answer = pending.kms.decrypt(written.ciphertext, written.key_id, written.annotations)
    assert answer.plaintext == b"p" * 32
    pending.stop()
    pending.start(stableObservations=1, activationDelay="0s")  # the operator speeds it up
    assert pending.wait_key_id(other_than=old) == written.key_id


def test_a_restart_after_promotion_never_shows_the_old_key_id(node, openbao):
    first = node().start()
    old = first.wait_key_id()
    bao_rotate(openbao, first.mount)
    new = first.wait_key_id(other_than=old)
    first.stop()
    first.start(wait=False)
    seen = set()
    while (status := first.status())[0] != "ok":
        seen.add(status[1])
    assert status[1] == new and old not in seen


def test_a_registry_deleted_after_a_rotation_fails_closed_until_rebuilt(node, openbao, capsys):
    first = node().start()
    old = first.wait_key_id()
    early = first.kms.encrypt(b"e" * 32)
    bao_rotate(openbao, first.mount)
    first.wait_key_id(other_than=old)
    first.stop()
    first.state_path.unlink()
    first.start(wait=False)
    healthz = first.wait_reason("state_missing")
    assert first.status()[1] == ""
    assert refused(lambda: first.kms.encrypt(b"x" * 32)) is Code.FAILED_PRECONDITION
    # reads go on for the versions OpenBao lists: their key_ids carry their creation times
    assert first.kms.decrypt(early.ciphertext, early.key_id, early.annotations).plaintext
    code, plan = first.cli(capsys, "rebuild-state")
    assert code == 0 and plan["current"].startswith("state_missing")
    assert [v["state"] for v in plan["trust"]["versions"]] == ["retired", "active"]
    code, _ = first.cli(capsys, "rebuild-state", "--apply", "--expected-state-hash", "absent")
    assert code == 4  # not what the plan showed: refused
    code, done = first.cli(
        capsys, "rebuild-state", "--apply", "--expected-state-hash", plan["state_hash"]
    )
    assert code == 0 and done["applied"], healthz
    first.wait_key_id()  # the running provider picks the rebuilt registry up


def test_a_registry_edited_by_hand_is_rejected(node, openbao):
    first = node().start()
    bao_rotate(openbao, first.mount)
    wait_for(lambda: first.versions().get(2) == "active")
    document = orjson.loads(first.state_path.read_bytes())
    document["versions"]["1"]["state"] = "active"
    document["versions"]["2"]["state"] = "pending"
    first.state_path.write_bytes(orjson.dumps(document))
    first.wait_reason("state_invalid")  # while running
    assert refused(lambda: first.kms.encrypt(b"x" * 32)) is Code.FAILED_PRECONDITION
    first.stop()
    first.start(wait=False)
    assert "state_invalid" in first.wait_reason("state_invalid")  # and after a restart


def test_a_key_deleted_and_recreated_while_down_fails_closed(node, openbao):
    first = node().start()
    written = first.kms.encrypt(b"k" * 32)
    first.stop()
    time.sleep(1.1)  # creation times have one-second resolution
    mount = first.mount
    openbao.api("POST", f"{mount}/keys/kms/config", {"deletion_allowed": True})
    openbao.api("DELETE", f"{mount}/keys/kms")
    openbao.setup_transit(mount, "kms")
    first.start(wait=False)
    first.wait_reason("key_lineage_version_created_changed")
    assert refused(lambda: first.kms.encrypt(b"x" * 32)) is Code.FAILED_PRECONDITION
    # the old key_id still names the old key material: Transit refuses, nothing decrypts
    code = refused(
        lambda: first.kms.decrypt(written.ciphertext, written.key_id, written.annotations)
    )
    assert code in (Code.INVALID_ARGUMENT, Code.FAILED_PRECONDITION)


def test_a_version_rollback_fails_closed_across_restarts(node, openbao):
    # a backup needs an exportable key that allows plaintext backups: unhealthy from the
    # start, but the node still observes and records every version it sees
    first = node(key_options={"exportable": True, "allow_plaintext_backup": True})
    first.start(wait=False)
    wait_for(lambda: first.versions().get(1) == "active")
    backup = openbao.api("GET", f"{first.mount}/backup/kms")["data"]["backup"]
    bao_rotate(openbao, first.mount)
    wait_for(lambda: 2 in first.versions())
    openbao.api("POST", f"{first.mount}/restore/kms", {"backup": backup, "force": True})
    first.wait_reason("key_lineage_latest_version_decreased")
    first.stop()
    first.start(wait=False)
    first.wait_reason("key_lineage_latest_version_decreased")


def test_retire_then_restore_round_trip_with_the_expected_hash_guard(node, openbao, capsys):
    first = node().start()
    old = first.wait_key_id()
    v1 = first.kms.encrypt(b"1" * 32)
    bao_rotate(openbao, first.mount)
    first.wait_key_id(other_than=old)
    code, plan = first.cli(capsys, "retire-versions", "--before-version", "2")
    assert code == 0 and plan["withdraw_versions"] == [1] and not plan["applied"]
    stale = plan["state"]["hash"]
    bao_rotate(openbao, first.mount)  # the node writes v3: the plan is now stale
    wait_for(lambda: first.versions().get(3) == "active")
    apply = ("--before-version", "2", "--apply", "--expected-state-hash")
    code, error = first.cli(capsys, "retire-versions", *apply, stale)
    assert code == 4 and "changed since the plan" in error
    code, plan = first.cli(capsys, "retire-versions", "--before-version", "2")
    code, done = first.cli(capsys, "retire-versions", *apply, plan["state"]["hash"])
    assert code == 0 and done["applied"]

    def withdrawn() -> bool:
        try:
            first.kms.decrypt(v1.ciphertext, v1.key_id, v1.annotations)
        except grpc.RpcError as error:
            return error.code() is Code.FAILED_PRECONDITION
        return False

    wait_for(withdrawn)
    openbao.api("POST", f"{first.mount}/keys/kms/config", {"min_decryption_version": 2})
    time.sleep(0.5)
    assert first.status()[0] == "ok"  # raising it past a withdrawn version is no problem
    first.stop()
    first.start()
    assert withdrawn()  # the same answer after a restart
    # undo: lower min_decryption_version first, then restore
    openbao.api("POST", f"{first.mount}/keys/kms/config", {"min_decryption_version": 1})
    code, plan = first.cli(capsys, "restore-versions", "--versions", "1")
    assert code == 0 and plan["restore_versions"] == [1]
    code, done = first.cli(
        capsys,
        "restore-versions",
        "--versions",
        "1",
        "--apply",
        "--expected-state-hash",
        plan["state"]["hash"],
    )
    assert code == 0 and done["applied"]
    wait_for(lambda: first.versions().get(1) == "retired")
    assert first.kms.decrypt(v1.ciphertext, v1.key_id, v1.annotations).plaintext == b"1" * 32


def test_raising_min_decryption_past_a_kept_version_fails_closed(node, openbao):
    first = node().start()
    old = first.wait_key_id()
    bao_rotate(openbao, first.mount)
    first.wait_key_id(other_than=old)
    openbao.api("POST", f"{first.mount}/keys/kms/config", {"min_decryption_version": 2})
    first.wait_reason("key_retained_version_below_min_decryption")
    openbao.api("POST", f"{first.mount}/keys/kms/config", {"min_decryption_version": 1})
    first.wait_key_id()


def test_two_providers_never_share_a_state_file(node):
    first = node().start()
    second = node(first.mount)
    second.state_path = first.state_path
    with pytest.raises(StateLocked, match="two providers never share"):
        second.start()
    assert first.status()[0] == "ok"


def test_rotation_plan_shows_pending_progress_and_the_state_hash(node, openbao, capsys):
    first = node().start(stableObservations=1000, activationDelay="1h")
    bao_rotate(openbao, first.mount)
    wait_for(lambda: first.versions().get(2) == "pending")
    code, plan = first.cli(capsys, "rotation-plan")
    assert code == 0 and plan["problems"] == []
    assert (plan["active_version"], plan["pending_versions"], plan["latest_version"]) == (1, [2], 2)
    assert plan["promotion"]["version"] == 2 and plan["promotion"]["observations_needed"] == 1000
    assert plan["promotion"]["earliest_in_seconds"] > 3000
    assert len(plan["state"]["hash"]) == 64 and plan["state"]["generation"] >= 2


def test_ready_and_the_start_log_say_whether_persistence_is_on(node, caplog):
    persistent = node().start()
    memory = node(persistent.mount)
    memory.persistent = False
    with caplog.at_level(logging.WARNING, logger="bao_kms.provider"):
        memory.start()
    assert any("persistence is off" in record.getMessage() for record in caplog.records)
    for each, expected in ((persistent, True), (memory, False)):
        assert each.provider is not None
        address = each.provider.ops.addresses["/ready"]
        with urllib.request.urlopen(f"http://{address}/ready", timeout=5) as answer:
            facts = json.loads(answer.read())["key_registry"]
        assert facts["persistent"] is expected and facts["active_version"] == 1
