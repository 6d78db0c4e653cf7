"""The version registry: which key versions this node has seen, and in which state, kept on disk
so that a restart never forgets a version etcd may still hold (config ``state.path``).

Files, all mode 0600 in a directory only the provider's user can write (``<path>`` is
``state.path``, by default ``/var/lib/openbao-kms/key-registry.json``):

* ``<path>``: the state document (JSON; :class:`StoredState`);
* ``<path>.checkpoint``: the replay guard, the generation and hash of the last write;
* ``<path>.lock``: held by the provider for its lifetime, so two providers never share a file;
* ``<path>.txlock``: held for each read or write, so the provider and the CLI take turns.

Tamper-evident, not tamper-proof: each document carries a monotonic ``generation``, the hash
of the document it replaced (``previousHash``) and its own hash. A hand edit breaks the hash;
an older copy put back is older than the checkpoint; a file of another key or identity names
another ``scope``. Nothing here is secret, and whoever can write the directory can also replace
the provider, so the point is to refuse accidents and stale copies, loudly.

Missing state is only normal on a fresh node whose key was never rotated (the monitor then
bootstraps it, :func:`~.rotation.bootstrap`); any other missing or damaged file fails closed
with :data:`RECOVERY` in the message. Without ``state.path`` the registry lives in memory
(:class:`MemoryRegistry`) and ``persistent`` says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Protocol

import orjson

from .. import _codec
from ..identity import Identity
from . import _state_files as files
from ._registry_document import (
    CHECKPOINT_FORMAT,
    REBUILT_FROM,
    RECOVERY,
    RegistryError,
    StateConflict,
    StateInvalid,
    StateLocked,
    StateMissing,
    StateWriteFailed,
    StoredState,
    decode_checkpoint,
    decode_state,
    encode_state,
    stamp,
)
from .rotation import KeyState


def registry_scope(identity: Identity) -> str:
    """What a state file belongs to: a hash of the labels that make key_ids, so a file copied
    from another cluster, key or identity is refused instead of merged."""
    parts = (
        "openbao-kms/key-registry/v1",
        identity.provider_name,
        identity.cluster_id,
        identity.openbao_instance_id,
        identity.namespace,
        identity.transit_mount_id,
        identity.key_lineage_id,
    )
    return _codec.hash_label("\0".join(parts))


class VersionRegistry(Protocol):
    """Where the monitor keeps its key state: a file (:class:`FileRegistry`) or memory."""

    @property
    def persistent(self) -> bool: ...

    @property
    def location(self) -> str: ...

    def open(self) -> None: ...

    def close(self) -> None: ...

    def load(self) -> StoredState | None: ...

    def save(self, state: KeyState, expected: StoredState | None) -> StoredState: ...


# --- on disk ----------------------------------------------------------------------------------


class FileRegistry:
    """The registry in ``state.path``: one per provider process, shared with the CLI."""

    persistent = True

    def __init__(self, path: Path, scope: str, wall_clock: Callable[[], float]) -> None:
        self.path = path
        self.scope = scope
        self.checkpoint_path = path.with_name(path.name + ".checkpoint")
        self._owner = files.OwnerLock(path.with_name(path.name + ".lock"))
        self._txlock_path = path.with_name(path.name + ".txlock")
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._current: StoredState | None = None
        self._seen: object = object()  # the files' signatures when last read or written

    @property
    def location(self) -> str:
        return str(self.path)

    def open(self) -> None:
        """Take the owner lock: StateLocked when another process uses this file."""
        try:
            files.prepare_directory(self.path.parent)
            holder = self._owner.acquire()
        except (files.UnsafeFile, OSError) as error:
            raise StateInvalid(f"cannot use the key registry: {_describe(error)}") from None
        if holder is not None:
            pid = f"pid {holder}" if holder else "another process"
            raise StateLocked(
                f"the key registry {self.path} is in use by {pid}: two providers never share "
                "one state file; give each its own state.path, or stop the other one"
            )

    def close(self) -> None:
        self._owner.release()

    def read(self) -> StoredState | None:
        """The state on disk (None: none yet, a fresh node), verified; RegistryError if it is
        missing or damaged. Read-only; no owner lock needed (the CLI reads this way)."""
        if not self.path.parent.exists():
            return None  # not even the directory: a fresh node
        try:
            with files.transaction_lock(self._txlock_path, exclusive=False):
                return self._read_locked()
        except files.UnsafeFile as error:
            raise StateInvalid(f"{error}; {RECOVERY}") from None
        except OSError as error:
            raise StateInvalid(f"cannot read the key registry: {_describe(error)}") from None

    def load(self) -> StoredState | None:
        """The state, re-read only when the files changed on disk (the CLI wrote them), and
        checked to continue the history this process already holds."""
        with self._lock:
            seen = (files.signature(self.path), files.signature(self.checkpoint_path))
            if seen == self._seen:
                return self._current
            stored = self.read()
            if self._current is not None:
                _check_continues(self._current, stored)
            self._current, self._seen = stored, seen
            return stored

    def save(self, state: KeyState, expected: StoredState | None) -> StoredState:
        """Write *state* as the successor of *expected* (None: the first state of a fresh
        node); StateConflict when the file no longer holds *expected*."""
        with self._lock:
            with self._writing():
                on_disk = self._read_locked()
                if _hash(on_disk) != _hash(expected):
                    raise StateConflict(
                        "the key registry changed since it was read (another writer); read it again"
                    )
                stored = self._write_locked(state, expected, 0)
                self._seen = (files.signature(self.path), files.signature(self.checkpoint_path))
            self._current = stored
            return stored

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """The directory made and the exclusive transaction lock held, for one write; a file
        that is not safe to trust is StateInvalid, any other file error StateWriteFailed."""
        try:
            files.prepare_directory(self.path.parent)
            with files.transaction_lock(self._txlock_path, exclusive=True):
                yield
        except files.UnsafeFile as error:
            raise StateInvalid(f"{error}; {RECOVERY}") from None
        except OSError as error:
            raise StateWriteFailed(f"cannot write the key registry: {_describe(error)}") from None

    def token(self) -> str:
        """What ``--expected-state-hash`` must name for the files as they are now: the hash
        of a valid state, ``absent``, or ``damaged-<sha256 of both files>``."""
        if not self.path.parent.exists():
            return "absent"
        with files.transaction_lock(self._txlock_path, exclusive=False):
            return self._token_locked()

    def replace(self, state: KeyState, expected_token: str) -> StoredState:
        """Write *state* over whatever the files hold now (``rebuild-state``), if their token
        is still *expected_token*; the generation continues above any the files show."""
        with self._lock:
            with self._writing():
                token = self._token_locked()
                if token != expected_token:
                    raise StateConflict(
                        f"the key registry is now {token}, not {expected_token}: "
                        "show the plan again"
                    )
                floor = self._highest_generation()
                previous = REBUILT_FROM + token
                stored = self._write_locked(state, None, floor, previous_hash=previous)
            self._current, self._seen = stored, object()
            return stored

    # --- with the transaction lock held ----------------------------------------------------

    def _read_locked(self) -> StoredState | None:
        data = files.read_private(self.path)
        checkpoint = files.read_private(self.checkpoint_path)
        if data is None and checkpoint is None:
            return None
        name = self.path.name
        if data is None:
            raise StateMissing(
                f"the key registry {name} is missing but its checkpoint is not; " + RECOVERY
            )
        stored = decode_state(data, self.scope, f"the key registry {name}")
        if checkpoint is None:
            raise StateInvalid(
                f"the key registry {name} has no checkpoint ({name}.checkpoint), so a replayed "
                f"copy cannot be told apart; {RECOVERY}"
            )
        mark = decode_checkpoint(checkpoint, name)
        if (mark.generation, mark.hash) == (stored.generation, stored.hash):
            return stored
        if mark.generation == stored.generation - 1 and mark.hash == stored.previous_hash:
            return stored  # a write stopped between the state's rename and the checkpoint's
        if mark.generation > stored.generation:
            raise StateInvalid(
                f"the key registry {name} (generation {stored.generation}) is older than its "
                f"checkpoint (generation {mark.generation}): an older copy was put back; "
                + RECOVERY
            )
        raise StateInvalid(f"the key registry {name} does not match its checkpoint; {RECOVERY}")

    def _write_locked(
        self,
        state: KeyState,
        previous: StoredState | None,
        floor: int,
        *,
        previous_hash: str = "",
    ) -> StoredState:
        generation = (previous.generation if previous else floor) + 1
        stored = stamp(
            state,
            previous.hash if previous else previous_hash,
            generation,
            self._wall_clock(),
            self.scope,
        )
        files.atomic_write(self.path, encode_state(stored, self.scope))
        mark = {"format": CHECKPOINT_FORMAT, "generation": generation, "hash": stored.hash}
        files.atomic_write(self.checkpoint_path, orjson.dumps(mark) + b"\n")
        return stored

    def _token_locked(self) -> str:
        try:
            stored = self._read_locked()
        except RegistryError:
            pass
        else:
            return "absent" if stored is None else stored.hash
        digest = hashlib.sha256()
        for path in (self.path, self.checkpoint_path):
            try:
                digest.update(files.read_private(path) or b"<absent>")
            except files.UnsafeFile:
                digest.update(b"<unsafe>")
        return "damaged-" + digest.hexdigest()

    def _highest_generation(self) -> int:
        """The highest generation either file shows, read leniently (they may be damaged)."""
        highest = 0
        for path in (self.path, self.checkpoint_path):
            try:
                value = orjson.loads(files.read_private(path) or b"{}").get("generation")
            except (orjson.JSONDecodeError, AttributeError, files.UnsafeFile):
                continue
            if type(value) is int:
                highest = max(highest, value)
        return highest


def _hash(stored: StoredState | None) -> str:
    return "absent" if stored is None else stored.hash


def _check_continues(held: StoredState, new: StoredState | None) -> None:
    """A state re-read from disk must continue the one this process holds: later, with every
    version it knew at the same creation time, and the active version never lower."""
    if new is None:
        raise StateMissing(f"the key registry was deleted while in use; {RECOVERY}")
    if new.previous_hash.startswith(REBUILT_FROM) and new.generation > held.generation:
        return  # rebuild-state: the operator chose to trust live metadata, after a plan
    if new.generation < held.generation or (
        new.generation == held.generation and new.hash != held.hash
    ):
        raise StateInvalid(
            f"the key registry went back to generation {new.generation} from "
            f"{held.generation}: an older copy was put back or the file was edited; {RECOVERY}"
        )
    versions = new.state.versions
    if (
        any(versions.get(v, r).created != r.created for v, r in held.state.versions.items())
        or any(v not in versions for v in held.state.versions)
        or new.state.active < held.state.active
    ):
        raise StateInvalid(
            "the key registry changed in a way no command makes (a version dropped or "
            f"re-dated, or the active version lowered); {RECOVERY}"
        )


def _describe(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}"
    return str(error)


# --- in memory ---------------------------------------------------------------------------------


class MemoryRegistry:
    """The registry without ``state.path``: as good as a file while the process lives, gone
    at restart (Status stays healthy; ``/ready``, the start-up log and ``doctor`` say so)."""

    persistent = False
    location = "memory"

    def __init__(self, wall_clock: Callable[[], float]) -> None:
        self._wall_clock = wall_clock
        self._lock = threading.Lock()
        self._current: StoredState | None = None

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def load(self) -> StoredState | None:
        return self._current

    def save(self, state: KeyState, expected: StoredState | None) -> StoredState:
        with self._lock:
            if _hash(self._current) != _hash(expected):
                raise StateConflict("the key state changed since it was read; read it again")
            generation = (expected.generation if expected else 0) + 1
            previous = expected.hash if expected else ""
            self._current = stamp(state, previous, generation, self._wall_clock(), "memory")
            return self._current


def open_registry(
    path: str | None, identity: Identity, wall_clock: Callable[[], float]
) -> FileRegistry | MemoryRegistry:
    """The registry config ``state.path`` asks for (not yet opened)."""
    if path is None:
        return MemoryRegistry(wall_clock)
    return FileRegistry(Path(path), registry_scope(identity), wall_clock)


__all__ = [
    "RECOVERY",
    "FileRegistry",
    "MemoryRegistry",
    "RegistryError",
    "StateConflict",
    "StateInvalid",
    "StateLocked",
    "StateMissing",
    "StateWriteFailed",
    "StoredState",
    "VersionRegistry",
    "encode_state",
    "open_registry",
    "registry_scope",
]
