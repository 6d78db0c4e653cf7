"""Scenario helpers for the fault matrix (tests/faults/): objects written before a fault, what
kube-apiserver sees while it lasts, and how long the provider takes to notice and to recover.

Every fault test follows one script:

1. write :data:`OBJECTS` objects through Encrypt and keep what the apiserver stores in etcd
   (ciphertext, key_id, annotations) next to the plaintext: :func:`write_objects`;
2. cause the fault and wait until Status names it, reading old objects all the while as an
   apiserver does (:func:`wait_unhealthy`); then one :func:`observe` records the gRPC codes of
   Status, Encrypt and Decrypt and what ``/ready`` says;
3. clear the fault and time it until Status is ``ok`` again (:func:`wait_recovered`);
4. decrypt every object of step 1 (:func:`read_back`).

Every Decrypt made anywhere in the script goes through :func:`decrypt_code`, which fails the test
if a call succeeds with any plaintext but the one that was written: "no wrong plaintext" is
checked on every answer, not only at the end. What each fault must produce is in
:mod:`_support.fault_table`; :class:`Matrix` gathers the measured times of a run.
"""

from __future__ import annotations

import http.client
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import grpc
import pytest
from grpc import StatusCode as Code

from _support.fault_table import Expectation, markdown_table
from bao_kms.embedded import EmbeddedOpenBao, EmbeddedOpenBaoError
from bao_kms.ops.http import split_address

#: objects written before each fault, and read back after it
OBJECTS = 12
#: probe intervals of the matrix's providers: faults are seen within about a second
PROBES = {"probeInterval": "500ms", "deepProbeInterval": "5s", "maxStaleness": "5s"}
#: a hung OpenBao costs this much per call (and the probes notice it after this long)
OPENBAO = {"timeout": "1s"}
#: the environment variable naming a JSON file for the run's measured times
REPORT_ENV = "BAO_KMS_FAULT_MATRIX_JSON"


class Kms(Protocol):
    """What the scripts need of :class:`bao_kms.api.client.KmsClient`."""

    def status(self) -> Any: ...

    def encrypt(self, plaintext: bytes, uid: str = "") -> Any: ...

    def decrypt(
        self, ciphertext: bytes, key_id: str, annotations: Mapping[str, bytes], uid: str = ""
    ) -> Any: ...


@dataclass(frozen=True)
class Stored:
    """One object as etcd holds it, with the plaintext it must decrypt to."""

    plaintext: bytes
    ciphertext: bytes
    key_id: str
    annotations: dict[str, bytes]


def write_objects(client: Kms, count: int = OBJECTS) -> list[Stored]:
    """Encrypt *count* fresh 32-byte DEK seeds; every one under the key_id Status names."""
    key_id = client.status().key_id
    stored = []
    for _ in range(count):
        plaintext = os.urandom(32)
        answer = client.encrypt(plaintext)
        assert answer.key_id == key_id, "Encrypt used a key_id Status did not name"
        stored.append(Stored(plaintext, answer.ciphertext, answer.key_id, dict(answer.annotations)))
    return stored


def code_of(call: Callable[[], object]) -> Code:
    try:
        call()
    except grpc.RpcError as error:
        code: Code = error.code()
        return code
    return Code.OK


def decrypt_code(client: Kms, item: Stored) -> Code:
    """Decrypt *item*: its code, and a failed test if it ever comes back as other bytes."""
    try:
        answer = client.decrypt(item.ciphertext, item.key_id, item.annotations)
    except grpc.RpcError as error:
        code: Code = error.code()
        return code
    assert answer.plaintext == item.plaintext, "Decrypt returned the wrong plaintext"
    return Code.OK


def read_back(client: Kms, stored: Iterable[Stored]) -> int:
    """Every object decrypts to its own plaintext; returns how many were read."""
    codes = [decrypt_code(client, item) for item in stored]
    failed = [code.name for code in codes if code is not Code.OK]
    assert not failed, f"{len(failed)} of {len(codes)} objects did not read back: {failed}"
    return len(codes)


def ready(address: str, path: str = "/ready") -> tuple[int, dict[str, Any]]:
    """GET ``/ready`` (or ``/live``): the HTTP status and the JSON body."""
    host, port = split_address(address)
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@dataclass(frozen=True)
class Seen:
    """What kube-apiserver and kubelet see at one moment of a fault."""

    healthz: str
    status_key_id: str
    encrypt: Code
    decrypt: Code
    ready_code: int
    ready_reasons: tuple[str, ...]
    live_code: int

    @property
    def reasons(self) -> tuple[str, ...]:
        return () if self.healthz == "ok" else tuple(self.healthz.split(","))


def observe(client: Kms, stored: list[Stored], ready_address: str) -> Seen:
    """One Status, one Encrypt, one Decrypt of an old object, one ``/ready`` and ``/live``
    (served together). An Encrypt that succeeds must carry the key_id Status names (the
    apiserver compares them)."""
    status = client.status()
    encrypted: list[Any] = []
    encrypt = code_of(lambda: encrypted.append(client.encrypt(os.urandom(32))))
    if encrypted:
        assert encrypted[0].key_id == status.key_id or client.status().healthz != "ok"
    decrypt = decrypt_code(client, stored[0])
    code, body = ready(ready_address)
    live = ready(ready_address, "/live")[0]
    return Seen(status.healthz, status.key_id, encrypt, decrypt, code, tuple(body["reasons"]), live)


def wait_unhealthy(
    client: Kms,
    stored: list[Stored],
    *,
    required: Iterable[str],
    timeout: float = 20.0,
) -> float:
    """Seconds until Status names every *required* reason (and no key_id), while an old object
    is read between polls as the apiserver's traffic would: what a request meets is how the
    provider learns of some faults before its next probe."""
    wanted = set(required)
    started = time.monotonic()
    deadline = started + timeout
    turn = 0
    while True:
        status = client.status()
        if status.healthz != "ok" and wanted <= set(status.healthz.split(",")):
            assert status.key_id == "", "Status named a key_id while not ok"
            return time.monotonic() - started
        if time.monotonic() > deadline:
            pytest.fail(f"Status did not name {sorted(wanted)} within {timeout}s: {status.healthz}")
        decrypt_code(client, stored[turn % len(stored)])
        turn += 1
        time.sleep(0.05)


def wait_recovered(client: Kms, since: float, *, timeout: float = 30.0) -> float:
    """Seconds from *since* (the fault cleared) until Status says ``ok``; polls every 20 ms,
    as Status never waits on OpenBao."""
    deadline = since + timeout
    while True:
        status = client.status()
        if status.healthz == "ok":
            return time.monotonic() - since
        if time.monotonic() > deadline:
            pytest.fail(f"Status not ok {timeout}s after the fault was cleared: {status.healthz}")
        time.sleep(0.02)


def run_fault(
    expectation: Expectation,
    client: Kms,
    ready_address: str,
    *,
    cause: Callable[[], object],
    clear: Callable[[], object],
    stored: list[Stored] | None = None,
    cleared: Callable[[], bool] | None = None,
    detect_timeout: float = 20.0,
) -> tuple[Measured, Seen]:
    """The whole script for a fault that makes Status unhealthy: write, cause, wait for Status
    to name it, observe and check every column of *expectation*, clear, time the recovery,
    read everything back. Returns the figures and what was seen.

    Recovery is timed from the moment *cleared* (polled on a thread while *clear* runs) first
    holds, e.g. "OpenBao answers sys/health 200" while a restart is still waiting on its own
    checks; without it, from when *clear* returns."""
    stored = stored if stored is not None else write_objects(client)
    caused = time.monotonic()  # a stop returns once the process is gone: time it from here
    cause()
    try:
        wait_unhealthy(client, stored, required=expectation.reasons, timeout=detect_timeout)
        detected = time.monotonic() - caused
        seen = observe(client, stored, ready_address)
    except BaseException:
        clear()  # never leave a shared server or key broken for the next test
        raise
    recovered = timed_recovery(client, clear, cleared)
    check_seen(expectation, seen)
    read_back(client, stored)
    return Measured(detected, recovered), seen


def timed_recovery(
    client: Kms, clear: Callable[[], object], cleared: Callable[[], bool] | None
) -> float:
    """Run *clear*; seconds from the fault's end (see :func:`run_fault`) to Status ``ok``.

    With *cleared*, a thread watches while *clear* runs: first for the end of the fault, then
    for Status, so a recovery that happens before *clear* returns is timed as it happened."""
    if cleared is None:
        clear()
        return wait_recovered(client, time.monotonic())
    ended: list[float] = []
    healthy: list[float] = []
    done = threading.Event()

    def watch() -> None:
        while not done.is_set() and not ended:
            if cleared():
                ended.append(time.monotonic())
            else:
                time.sleep(0.02)
        while not done.is_set() and not healthy:
            if client.status().healthz == "ok":
                healthy.append(time.monotonic())
            else:
                time.sleep(0.02)

    watcher = threading.Thread(target=watch, name="fault-cleared", daemon=True)
    watcher.start()
    try:
        clear()
    finally:
        done.set()
        watcher.join(10)
    since = ended[0] if ended else time.monotonic()
    return healthy[0] - since if healthy else wait_recovered(client, since)


def serving(server: EmbeddedOpenBao) -> Callable[[], bool]:
    """A *cleared* predicate for :func:`run_fault`: the server answers ``sys/health`` with 200
    (running, unsealed, active)."""

    def answers() -> bool:
        try:
            status, _ = server.request("GET", "sys/health", timeout=1.0)
        except EmbeddedOpenBaoError:
            return False
        return status == 200

    return answers


def check_seen(expectation: Expectation, seen: Seen) -> None:
    """*seen* is what *expectation* promises: the codes, the reasons, and /ready agreeing."""
    assert seen.encrypt in expectation.encrypt, (seen.encrypt, expectation.encrypt)
    assert seen.decrypt in expectation.decrypt, (seen.decrypt, expectation.decrypt)
    assert set(expectation.reasons) <= set(seen.reasons), seen.healthz
    assert seen.status_key_id == "", "Status named a key_id while not ok"
    assert seen.ready_code == 503
    assert seen.live_code == 200, "an outage must never make kubelet restart the provider"
    assert set(expectation.reasons) <= set(seen.ready_reasons), seen.ready_reasons


# --- the run's measurements -------------------------------------------------------------------


@dataclass
class Measured:
    """One fault's figures from a real run (seconds; None where the fault has no such time)."""

    detected: float | None = None
    recovered: float | None = None
    note: str = ""


@dataclass
class Matrix:
    """The run's measurements by fault name; thread-safe, written out at the session's end."""

    rows: dict[str, Measured] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, name: str, measured: Measured) -> None:
        with self._lock:
            self.rows[name] = measured

    def lines(self) -> list[str]:
        return [
            f"{name}: detected {_seconds(m.detected)}, recovered {_seconds(m.recovered)}"
            + (f"; {m.note}" if m.note else "")
            for name, m in self.rows.items()
        ]

    def write(self, path: Path) -> None:
        """The figures as JSON at *path*, and docs/fault-matrix.md's table with them beside
        it (*path* with the suffix ``.md``)."""
        document = {
            name: {"detected_s": m.detected, "recovered_s": m.recovered, "note": m.note}
            for name, m in self.rows.items()
        }
        path.write_text(json.dumps(document, indent=2) + "\n")
        times = {name: (m.detected, m.recovered) for name, m in self.rows.items()}
        path.with_suffix(".md").write_text(markdown_table(times))


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


class StatusWatch:
    """Polls Status every 20 ms on a thread and keeps every change of ``healthz`` with its
    time: whether (and how long) Status left ``ok`` during a fault under load."""

    def __init__(self, client: Kms) -> None:
        self._client = client
        self._stop = threading.Event()
        self.started = time.monotonic()
        #: (seconds since start, healthz) at each change
        self.changes: list[tuple[float, str]] = []
        self._thread = threading.Thread(target=self._run, name="status-watch", daemon=True)

    def __enter__(self) -> StatusWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last = ""
        while not self._stop.wait(0.02):
            try:
                healthz = self._client.status().healthz
            except grpc.RpcError as error:
                healthz = f"rpc:{error.code().name}"
            if healthz != last:
                self.changes.append((time.monotonic() - self.started, healthz))
                last = healthz

    def not_ok_seconds(self) -> float:
        """How long, in all, Status said anything but ``ok``."""
        total = 0.0
        marks = [*self.changes, (time.monotonic() - self.started, "end")]
        for (at, healthz), (until, _) in zip(marks, marks[1:], strict=False):
            if healthz != "ok":
                total += until - at
        return total


class MeasureFault(Protocol):
    """The ``measure_fault`` fixture: :func:`run_fault` for the fault table's row *name*
    against a provider (its client and its ``/ready``), its figures recorded in the matrix."""

    def __call__(
        self, name: str, client: Kms, provider: Any, **script: Any
    ) -> tuple[Measured, Seen]: ...
