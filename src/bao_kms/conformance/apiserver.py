"""kube-apiserver's use of a KMS v2 plugin, emulated: DEK seeds, local envelope writes, caches.

What ``k8s.io/apiserver``'s ``kmsv2`` envelope transformer does, and what this class does:

* **Status probe** (:meth:`ApiserverEmulation.probe`): validate version (pinned after the
  first answer), healthz and key_id; when healthy and the key_id differs from the current
  write state's, generate a random 32-byte DEK *seed*, Encrypt it (the only Encrypt calls:
  on start and on a key_id change), validate the response (key_id equal to Status's,
  ciphertext and annotation limits) and make it the write state. A refused response is
  discarded, as the apiserver does.
* **Write** (:meth:`~ApiserverEmulation.write`): per object, a random 32-byte ``info``; the
  object key is HKDF-SHA256 *expand* of the seed with that info (kube's
  ``HKDF_SHA256_XNONCE_AES_GCM_SEED``), the data AES-256-GCM-sealed with a random nonce and
  the object's etcd path as AAD. etcd keeps the encrypted seed, key_id and annotations
  beside the data. Writes need a write state younger than 3 minutes.
* **Read** (:meth:`~ApiserverEmulation.read`): the seed comes from a cache keyed by the stored
  (ciphertext, key_id, annotations); a miss calls Decrypt with exactly those. No
  single-flight, like the apiserver: concurrent misses on one seed send duplicate Decrypts.
  An object is *stale* when its key_id is not the current write state's.
* **Restart** drops the write state and caches (etcd stays); reads fail until the next
  successful probe. **Migrate** rewrites stale objects (``kubectl replace``).

Unlike the apiserver the emulation remembers every seed it generated, so a Decrypt answer
with other bytes is reported as such (:class:`WrongPlaintext`) rather than as the AES-GCM
failure it would cause.

Needs the ``cryptography`` package (``pip install 'bao-kms-provider[conformance]'``).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from .checks import (
    ENCRYPT_RESPONSE_RULES,
    HEALTHZ_OK,
    Check,
    encrypt_problems,
    status_problems,
)
from .plugin import KmsPlugin
from .report import Recorder

SEED_BYTES = 32
INFO_BYTES = 32  # kube's infoSizeExtendedNonceGCM: the per-object HKDF info
NONCE_BYTES = 12
#: kmsv2PluginWriteDEKSourceMaxTTL: writes keep working this long after the last good probe
WRITE_STATE_TTL = 180.0


class EmulationError(Exception):
    """A read or write the emulated apiserver could not complete."""


class NotReady(EmulationError):
    """No write state: no successful Status + Encrypt since start, or it expired."""

    def __init__(self, blocked_by: Check | str) -> None:
        super().__init__(f"no DEK seed (blocked by {blocked_by})")
        self.blocked_by = blocked_by


class DecryptRefused(EmulationError):
    """Decrypt of a stored seed answered with a non-OK code."""

    def __init__(self, code: str) -> None:
        super().__init__(f"Decrypt of a stored seed refused: {code}")
        self.code = code


class WrongPlaintext(EmulationError):
    """Decrypt of a stored seed answered OK with other bytes than were encrypted."""

    def __init__(self) -> None:
        super().__init__("Decrypt returned other bytes than were encrypted")


def rpc_code(error: grpc.RpcError) -> str:
    """The gRPC code name of a failed call (``UNAVAILABLE``), never its message."""
    code = getattr(error, "code", None)
    return code().name if callable(code) else type(error).__name__


@dataclass(frozen=True)
class DekSource:
    """An Encrypt answer as etcd stores it beside every object written with its seed."""

    ciphertext: bytes
    key_id: str
    annotations: tuple[tuple[str, bytes], ...]  # sorted: the value is a cache key

    @classmethod
    def from_response(cls, response: Any) -> DekSource:
        annotations = tuple(
            sorted((key, bytes(value)) for key, value in response.annotations.items())
        )
        return cls(bytes(response.ciphertext), str(response.key_id), annotations)

    def annotation_map(self) -> dict[str, bytes]:
        return dict(self.annotations)


@dataclass(frozen=True)
class StoredObject:
    """One object in the emulated etcd: info || nonce || AES-GCM output, and its DEK source."""

    source: DekSource
    encrypted_data: bytes


@dataclass
class WriteState:
    seed: bytes
    source: DekSource
    expires: float


@dataclass(frozen=True)
class ProbeResult:
    healthz: str
    key_id: str
    #: the answer passed validation and a write state for its key_id exists
    usable: bool
    #: an Encrypt was needed and its answer refused: the rule it broke
    encrypt_refused: Check | None = None


@dataclass(frozen=True)
class ReadResult:
    data: bytes
    stale: bool


def derive_object_key(seed: bytes, info: bytes) -> bytes:
    """kube's per-object key: HKDF-SHA256 expand-only (the seed is already uniform)."""
    return HKDFExpand(algorithm=SHA256(), length=32, info=info).derive(seed)


class ApiserverEmulation:
    """One kube-apiserver's KMS v2 envelope state over a plugin; :attr:`store` is its etcd."""

    def __init__(
        self,
        plugin: KmsPlugin,
        recorder: Recorder,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.plugin = plugin
        self._recorder = recorder
        self._clock = clock
        self.store: dict[str, StoredObject] = {}
        self._state: WriteState | None = None
        self._cache: dict[DekSource, bytes] = {}
        self._pinned_version: str | None = None
        self._seeds: dict[DekSource, bytes] = {}  # the harness's memory, not the apiserver's
        self._lock = threading.Lock()
        #: why there is no write state (the check that failed), for the phases that need one
        self.blocked_by: Check | str = "no Status probe yet"
        #: healthy Status key_ids in order of appearance, one entry per change
        self.key_ids: list[str] = []
        self.status_answers = 0
        self.encrypt_answers = 0
        self.seeds_encrypted = 0
        self.seeds_decrypted = 0

    # --- Status probe and DEK seed rotation ------------------------------------------------
    def probe(self, *, quiet_unreachable: bool = False) -> ProbeResult | None:
        """One Status probe, rotating the seed on a key_id change; None if Status failed.

        *quiet_unreachable*: a failed Status is not recorded (a plugin may still be starting).
        """
        try:
            status = self.plugin.status()
        except grpc.RpcError as error:
            if not quiet_unreachable:
                self._recorder.failed(Check.STATUS_REACHABLE, f"Status failed: {rpc_code(error)}")
            self.blocked_by = Check.STATUS_REACHABLE
            return None
        self.status_answers += 1
        self._recorder.passed(
            Check.STATUS_REACHABLE, f"{self.status_answers} Status calls answered"
        )
        version, healthz, key_id = str(status.version), str(status.healthz), str(status.key_id)
        problems = status_problems(version, healthz, key_id, self._pinned_version)
        for check, problem in problems:
            self._recorder.failed(check, problem)
        broken = {check for check, _ in problems}
        if Check.STATUS_VERSION not in broken:
            self._recorder.passed(Check.STATUS_VERSION, f'"{version}" on every answer')
            self._pinned_version = version
        if healthz != HEALTHZ_OK or problems:
            self.blocked_by = problems[0][0] if problems else Check.STATUS_HEALTHZ
            return ProbeResult(healthz, key_id, usable=False)
        self._recorder.passed(Check.STATUS_KEY_ID, f"{len(key_id.encode())} bytes")
        self._observe_key_id(key_id)
        refused = self._rotate_seed_on_key_id_change(key_id)
        state = self._state
        usable = refused is None and state is not None and state.source.key_id == key_id
        return ProbeResult(healthz, key_id, usable=usable, encrypt_refused=refused)

    def _observe_key_id(self, key_id: str) -> None:
        if self.key_ids and self.key_ids[-1] == key_id:
            self._recorder.passed(Check.KEY_ID_STABLE, self._key_id_note())
            return
        if key_id in self.key_ids:
            self._recorder.failed(
                Check.KEY_ID_STABLE,
                "Status key_id returned to a key_id it had left (flip-flop or reuse)",
            )
        else:
            self._recorder.passed(Check.KEY_ID_STABLE, self._key_id_note(extra=1))
        self.key_ids.append(key_id)

    def _key_id_note(self, extra: int = 0) -> str:
        changes = len(self.key_ids) + extra - 1
        return f"{changes} key_id change(s), none back to an earlier key_id"

    def _rotate_seed_on_key_id_change(self, status_key_id: str) -> Check | None:
        state = self._state
        if state is not None and state.source.key_id == status_key_id:
            state.expires = self._clock() + WRITE_STATE_TTL
            return None
        seed = os.urandom(SEED_BYTES)
        try:
            response = self.plugin.encrypt(seed, str(uuid.uuid4()))
        except grpc.RpcError as error:
            self._recorder.failed(
                Check.ENCRYPT_SUCCEEDS, f'Encrypt refused while Status said "ok": {rpc_code(error)}'
            )
            self.blocked_by = Check.ENCRYPT_SUCCEEDS
            return Check.ENCRYPT_SUCCEEDS
        self.encrypt_answers += 1
        self._recorder.passed(
            Check.ENCRYPT_SUCCEEDS, f"{self.encrypt_answers} DEK seed(s) encrypted"
        )
        source = DekSource.from_response(response)
        problems = encrypt_problems(
            source.ciphertext, source.key_id, source.annotation_map(), status_key_id
        )
        for check, problem in problems:
            self._recorder.failed(check, problem)
        broken = [check for check, _ in problems]
        for check in ENCRYPT_RESPONSE_RULES:
            if check not in broken:
                self._recorder.passed(check, self._encrypt_note(check, source))
        if broken:
            self.blocked_by = broken[0]  # the apiserver discards the answer: no new seed
            return broken[0]
        with self._lock:
            self._seeds[source] = seed
            self._cache[source] = seed
        self._state = WriteState(seed, source, self._clock() + WRITE_STATE_TTL)
        self.seeds_encrypted += 1
        return None

    @staticmethod
    def _encrypt_note(check: Check, source: DekSource) -> str:
        if check is Check.ENCRYPT_CIPHERTEXT_SIZE:
            return f"{len(source.ciphertext)} bytes"
        if check is Check.ENCRYPT_ANNOTATION_KEYS:
            return f"{len(source.annotations)} annotation key(s), all valid"
        if check is Check.ENCRYPT_ANNOTATION_SIZE:
            total = sum(len(key.encode()) + len(value) for key, value in source.annotations)
            return f"{total} bytes"
        return "equal to the Status key_id"

    # --- envelope writes and reads --------------------------------------------------------------
    @property
    def current(self) -> tuple[DekSource, bytes] | None:
        """The write state's DEK source and seed (for direct RPC probes), if any."""
        state = self._state
        return (state.source, state.seed) if state is not None else None

    def write(self, path: str, data: bytes) -> None:
        state = self._state
        if state is None:
            raise NotReady(self.blocked_by)
        if self._clock() > state.expires:
            raise NotReady("an expired write state (no good Status probe for 3 minutes)")
        info, nonce = os.urandom(INFO_BYTES), os.urandom(NONCE_BYTES)
        sealed = AESGCM(derive_object_key(state.seed, info)).encrypt(nonce, data, path.encode())
        self.store[path] = StoredObject(state.source, info + nonce + sealed)

    def read(self, path: str) -> ReadResult:
        """Read *path* through the DEK cache; raises :class:`EmulationError` subclasses."""
        state = self._state
        if state is None:
            raise NotReady(self.blocked_by)  # reads fail until the first good probe
        stored = self.store[path]
        with self._lock:
            seed = self._cache.get(stored.source)
        if seed is None:
            seed = self.unwrap(stored.source)
            with self._lock:
                self._cache[stored.source] = seed
        info = stored.encrypted_data[:INFO_BYTES]
        nonce = stored.encrypted_data[INFO_BYTES : INFO_BYTES + NONCE_BYTES]
        sealed = stored.encrypted_data[INFO_BYTES + NONCE_BYTES :]
        try:
            data = AESGCM(derive_object_key(seed, info)).decrypt(nonce, sealed, path.encode())
        except InvalidTag:  # unreachable while unwrap() compares seeds; kept for clarity
            raise WrongPlaintext() from None
        return ReadResult(data, stale=stored.source.key_id != state.source.key_id)

    def unwrap(self, source: DekSource) -> bytes:
        """Decrypt a stored seed, exactly as a cache miss does; the answer is compared with
        the seed sent and judged as ``decrypt-round-trip`` (a refusal is the caller's to
        judge: it may be the point of the phase)."""
        try:
            response = self.plugin.decrypt(
                source.ciphertext, source.key_id, source.annotation_map(), str(uuid.uuid4())
            )
        except grpc.RpcError as error:
            raise DecryptRefused(rpc_code(error)) from None
        with self._lock:
            expected = self._seeds.get(source)
            if expected is not None and bytes(response.plaintext) == expected:
                self.seeds_decrypted += 1
                note = f"{self.seeds_decrypted} Decrypts of stored seeds gave the exact seed"
            else:
                note = ""
        if expected is None or not note:
            self._recorder.failed(Check.DECRYPT_ROUND_TRIP, str(WrongPlaintext()))
            raise WrongPlaintext()
        self._recorder.passed(Check.DECRYPT_ROUND_TRIP, note)
        return expected

    def seed_of(self, source: DekSource) -> bytes | None:
        with self._lock:
            return self._seeds.get(source)

    # --- lifecycle --------------------------------------------------------------------------------
    def restart(self) -> None:
        """A kube-apiserver restart: write state, caches and the pinned version are gone."""
        self._state = None
        self._pinned_version = None
        self.blocked_by = "a restart with no Status probe since"
        self.drop_cache()

    def drop_cache(self) -> None:
        with self._lock:
            self._cache.clear()

    def migrate(self) -> int:
        """The storage migration (``kubectl get -o json | kubectl replace -f -``): rewrite
        every stale object under the current seed. Returns how many were rewritten."""
        rewritten = 0
        for path in sorted(self.store):
            result = self.read(path)
            if result.stale:
                self.write(path, result.data)
                rewritten += 1
        return rewritten
