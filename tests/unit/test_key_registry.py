"""The version registry's files: atomic writes, modes, the lock, and every way a file can be
wrong (edited, replayed, deleted, another key's, someone else's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from _support import FakeClock
from bao_kms.identity import Identity
from bao_kms.keys.registry import (
    RECOVERY,
    FileRegistry,
    MemoryRegistry,
    StateConflict,
    StateInvalid,
    StateLocked,
    StateMissing,
    encode_state,
    registry_scope,
)
from bao_kms.keys.rotation import KeyState, Promotion, VersionRecord, VersionState
from bao_kms.reasons import Reason

IDENTITY = Identity("provider", "cluster", "instance", "", "mount", "lineage")
SCOPE = registry_scope(IDENTITY)
V1 = KeyState({1: VersionRecord(1_700_000_000, VersionState.ACTIVE)}, 1)
V2_PENDING = KeyState(
    {
        1: VersionRecord(1_700_000_000, VersionState.ACTIVE),
        2: VersionRecord(1_700_000_500, VersionState.PENDING),
    },
    2,
    Promotion(2, 1, 1_700_000_600.25),
)
V2_ACTIVE = KeyState(
    {
        1: VersionRecord(1_700_000_000, VersionState.RETIRED),
        2: VersionRecord(1_700_000_500, VersionState.ACTIVE),
    },
    2,
)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir(mode=0o700)
    return directory


@pytest.fixture
def path(state_dir: Path) -> Path:
    return state_dir / "key-registry.json"


@pytest.fixture
def make(path: Path):
    opened: list[FileRegistry] = []

    def make_registry(scope: str = SCOPE) -> FileRegistry:
        registry = FileRegistry(path, scope, FakeClock(1_700_001_000))
        opened.append(registry)
        return registry

    yield make_registry
    for registry in opened:
        registry.close()


def rewrite(path: Path, edit) -> None:
    document = orjson.loads(path.read_bytes())
    edit(document)
    path.write_bytes(orjson.dumps(document))


def test_a_fresh_directory_reads_as_no_state_and_writes_generation_one(make, path):
    registry = make()
    registry.open()
    assert registry.read() is None and registry.load() is None
    stored = registry.save(V1, None)
    assert stored.generation == 1 and stored.previous_hash == "" and len(stored.hash) == 64
    assert registry.read() == stored
    for name in ("key-registry.json", "key-registry.json.checkpoint", "key-registry.json.lock"):
        assert (path.parent / name).stat().st_mode & 0o777 == 0o600
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_each_write_chains_to_the_last(make):
    registry = make()
    first = registry.save(V1, None)
    second = registry.save(V2_PENDING, first)
    third = registry.save(V2_ACTIVE, second)
    assert (second.generation, second.previous_hash) == (2, first.hash)
    assert (third.generation, third.previous_hash) == (3, second.hash)
    assert make().read() == third  # another process reads what was written


def test_promotion_progress_survives_the_round_trip(make):
    make().save(V2_PENDING, None)
    assert make().read().state.promotion == Promotion(2, 1, 1_700_000_600.25)


def test_a_stale_expected_state_is_a_conflict(make):
    registry = make()
    first = registry.save(V1, None)
    registry.save(V2_PENDING, first)
    with pytest.raises(StateConflict):
        registry.save(V2_ACTIVE, first)
    with pytest.raises(StateConflict):
        registry.save(V1, None)


def test_a_hand_edit_is_refused(make, path):
    make().save(V2_ACTIVE, make().save(V2_PENDING, make().save(V1, None)))
    rewrite(path, lambda d: d["versions"]["1"].update(state="active"))
    with pytest.raises(StateInvalid, match="does not match its own hash") as info:
        make().read()
    assert RECOVERY in str(info.value) and info.value.reason is Reason.STATE_INVALID


def test_an_edit_with_a_recomputed_hash_still_misses_the_checkpoint(make, path):
    stored = make().save(V2_PENDING, make().save(V1, None))
    forged = encode_state(type(stored)(V2_ACTIVE, 2, "", stored.previous_hash, "x"), SCOPE)
    path.write_bytes(forged)
    with pytest.raises(StateInvalid, match="does not match its checkpoint"):
        make().read()


def test_unknown_fields_are_refused(make, path):
    make().save(V1, None)
    rewrite(path, lambda d: d.update(extra=1))
    with pytest.raises(StateInvalid, match="fields: extra"):
        make().read()
    path.write_bytes(b"{not json")
    with pytest.raises(StateInvalid, match="not JSON"):
        make().read()


def test_an_older_copy_put_back_is_refused(make, path):
    first = make().save(V1, None)
    old = path.read_bytes()
    make().save(V2_PENDING, first)
    path.write_bytes(old)
    with pytest.raises(StateInvalid, match="older than its checkpoint"):
        make().read()


def test_a_write_cut_between_the_two_renames_is_accepted(make, path):
    checkpoint = path.with_name(path.name + ".checkpoint")
    first = make().save(V1, None)
    old_checkpoint = checkpoint.read_bytes()
    second = make().save(V2_PENDING, first)
    checkpoint.write_bytes(old_checkpoint)
    assert make().read() == second


def test_a_deleted_state_file_with_its_checkpoint_left_is_missing(make, path):
    make().save(V1, None)
    path.unlink()
    with pytest.raises(StateMissing) as info:
        make().read()
    assert info.value.reason is Reason.STATE_MISSING and RECOVERY in str(info.value)


def test_a_state_file_without_checkpoint_is_refused(make, path):
    make().save(V1, None)
    path.with_name(path.name + ".checkpoint").unlink()
    with pytest.raises(StateInvalid, match="no checkpoint"):
        make().read()


def test_another_keys_state_is_refused(make):
    make(scope="another").save(V1, None)
    with pytest.raises(StateInvalid, match="another key or identity"):
        make().read()


def test_files_others_can_write_are_refused(make, path):
    make().save(V1, None)
    path.chmod(0o620)
    with pytest.raises(StateInvalid, match="writable by group or others"):
        make().read()
    path.chmod(0o600)
    target = path.with_name("elsewhere.json")
    path.rename(target)
    path.symlink_to(target)
    with pytest.raises(StateInvalid, match="symbolic link"):
        make().read()


def test_a_directory_others_can_write_is_refused(make, path):
    path.parent.chmod(0o770)
    with pytest.raises(StateInvalid, match="writable by group or others"):
        make().open()


def test_a_missing_directory_is_created_private(tmp_path):
    registry = FileRegistry(tmp_path / "new" / "key-registry.json", SCOPE, FakeClock())
    registry.open()
    registry.close()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700


def test_two_registries_never_share_a_file(make):
    first = make()
    first.open()
    with pytest.raises(StateLocked, match=f"pid {os.getpid()}"):
        make().open()
    first.close()
    make().open()  # released on close


def test_another_process_is_refused_the_lock(make, path):
    make().open()
    code = (
        "import sys; from pathlib import Path; from bao_kms.keys.registry import FileRegistry\n"
        f"FileRegistry(Path({str(path)!r}), 'x', float).open()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode != 0
    assert "StateLocked" in result.stderr and "two providers never share" in result.stderr


def test_load_follows_another_writer_and_refuses_a_rewound_history(make, path):
    provider = make()
    provider.open()
    first = provider.save(V1, None)
    assert provider.load() == first
    cli = make()
    second = cli.save(V2_PENDING, cli.read())
    assert provider.load() == second
    old = {
        name: (path.parent / name).read_bytes() for name in (path.name, path.name + ".checkpoint")
    }
    provider.save(V2_ACTIVE, second)
    for name, data in old.items():  # both files put back: only the process can tell
        (path.parent / name).write_bytes(data)
    with pytest.raises(StateInvalid, match="went back to generation 2 from 3"):
        provider.load()


def test_load_notices_a_deleted_registry(make, path):
    provider = make()
    provider.save(V1, None)
    provider.load()
    path.unlink()
    path.with_name(path.name + ".checkpoint").unlink()
    with pytest.raises(StateMissing, match="deleted while in use"):
        provider.load()


def test_replace_is_guarded_by_the_token_and_continues_the_generations(make, path):
    registry = make()
    stored = registry.save(V2_PENDING, registry.save(V1, None))
    assert registry.token() == stored.hash
    path.write_bytes(b"garbage")
    token = registry.token()
    assert token.startswith("damaged-")
    with pytest.raises(StateConflict, match="show the plan again"):
        registry.replace(V2_ACTIVE, stored.hash)
    rebuilt = registry.replace(V2_ACTIVE, token)
    assert rebuilt.generation == 3 and rebuilt.previous_hash == "rebuilt-from:" + token
    assert make().read() == rebuilt


def test_a_running_provider_accepts_a_rebuilt_registry(make, path):
    provider = make()
    held = provider.save(V2_ACTIVE, provider.save(V1, None))
    provider.load()
    path.unlink()
    with pytest.raises(StateMissing):
        provider.load()
    cli = make()
    rebuilt = cli.replace(KeyState({2: V2_ACTIVE.versions[2]}, 2), cli.token())
    assert rebuilt.generation > held.generation
    assert provider.load() == rebuilt


def test_the_memory_registry_behaves_like_a_file_without_one():
    registry = MemoryRegistry(FakeClock())
    assert not registry.persistent and registry.load() is None
    first = registry.save(V1, None)
    assert registry.save(V2_PENDING, first).generation == 2
    with pytest.raises(StateConflict):
        registry.save(V2_ACTIVE, first)
