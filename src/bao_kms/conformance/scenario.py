"""A conformance run: drive a KMS v2 plugin through an apiserver's life and judge every rule.

The phases, in order (each needs a write state; without one its checks are *blocked* by
whichever check took it away, so only the root cause fails):

1. **start**: Status probes until the plugin is healthy and the first seed is encrypted
   (within ``ready_timeout``).
2. **writes across restarts**: ``objects`` writes in each of three apiserver lifetimes, so
   etcd holds objects under three seeds; Status is probed between writes, as the apiserver
   polls it.
3. **latency samples**: ``samples`` restarts (Status + Encrypt each) and ``samples`` serial
   cache misses (one Decrypt each, checked against the seed sent).
4. **refusal probes**: tampered ciphertext, altered annotations, malformed and other key_ids.
5. **cold-start burst**: a restart, then every object read by ``concurrency`` threads that
   start together, so cache misses on one seed send concurrent duplicate Decrypts.
6. **rotation**: on a key_id change (made by the ``rotate`` hook, awaited, or seen during the
   run): old objects decrypt after a cache drop and read stale, the migrate step rewrites
   them, everything reads back under the new key_id; the refusal probes run again on the new
   seed with the earlier key_ids as the "other" ones.
7. **final probes**, then the latency targets are judged on the serial samples.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .apiserver import ApiserverEmulation, DecryptRefused, NotReady, ProbeResult, WrongPlaintext
from .checks import DECRYPT_LATENCY_TARGET, ENCRYPT_LATENCY_TARGET, HEALTHZ_OK, Check, shown
from .plugin import BURST, PROBE, SERIAL, KmsPlugin, TimedPlugin
from .report import ConformanceReport, Recorder, latency_summary
from .tamper import probe_refusals

LIFETIMES = 3  # apiserver lifetimes with writes: etcd ends up holding that many seeds
MAX_OBJECT_BYTES = 2048
ROTATION_WRITES = 8  # objects written under the new key_id before the migration
FINAL_PROBES = 3
PATH_PREFIX = "/registry/secrets/kms-conformance"


class RotateFailed(Exception):
    """The rotation hook could not rotate the key (its message says why, without secrets)."""


@dataclass(frozen=True)
class ConformanceOptions:
    #: how long the plugin may take to become healthy (at start and after each restart)
    ready_timeout: float = 10.0
    #: objects written in each of the three apiserver lifetimes
    objects: int = 64
    #: serial Encrypt and Decrypt calls sampled for the latency targets
    samples: int = 100
    #: threads in the cold-start burst
    concurrency: int = 32
    #: rotates the plugin's key mid-run (raise :class:`RotateFailed` to report a failure)
    rotate: Callable[[], None] | None = None
    #: how long to wait for the key_id to change after ``rotate`` (or, with
    #: ``expect_rotation`` and no hook, for someone else to rotate it)
    rotation_timeout: float = 60.0
    expect_rotation: bool = False
    #: latency misses fail the run instead of warning
    strict_latency: bool = False
    poll_interval: float = 0.1


def run_conformance(
    plugin: KmsPlugin,
    options: ConformanceOptions | None = None,
    *,
    clock: Callable[[], float] = time.monotonic,
) -> ConformanceReport:
    """Run every phase against *plugin* and return the report (never raises for its faults)."""
    return _Run(plugin, options or ConformanceOptions(), clock).run()


class _Run:
    def __init__(
        self, plugin: KmsPlugin, options: ConformanceOptions, clock: Callable[[], float]
    ) -> None:
        self.options = options
        self.clock = clock
        self.recorder = Recorder()
        self.timed = TimedPlugin(plugin)
        self.apiserver = ApiserverEmulation(self.timed, self.recorder, clock=clock)
        self.expected: dict[str, bytes] = {}  # what every path must read back as
        self.random = random.Random()

    def run(self) -> ConformanceReport:
        started = self.clock()
        if self._wait_usable(initial=True):
            phases = (
                self._writes_across_restarts,
                self._latency_samples,
                self._refusal_probes,
                self._cold_start_burst,
                self._rotation,
                self._final_probes,
            )
            for phase in phases:
                if not phase():
                    break
        self._judge_latency()
        for check in Check:  # whatever no phase reached is blocked by what stopped the run
            if not self.recorder.observed(check):
                self.recorder.blocked(check, self.apiserver.blocked_by)
        figures = {
            "objects_written": len(self.expected),
            "dek_seeds_encrypted": self.apiserver.seeds_encrypted,
            "key_id_changes": max(0, len(self.apiserver.key_ids) - 1),
            "duration_s": round(self.clock() - started, 3),
            **self.timed.figures(),
        }
        results = self.recorder.results(strict_latency=self.options.strict_latency)
        return ConformanceReport(results, figures)

    # --- start and restarts -------------------------------------------------------------------
    def _wait_usable(self, *, initial: bool = False) -> bool:
        """Probe until a write state for the Status key_id exists; False if it never does.

        A contract failure (bad version or key_id, a refused Encrypt answer) stops the wait at
        once: the apiserver would refuse the same answer on every later probe too.
        """
        deadline = self.clock() + self.options.ready_timeout
        last: ProbeResult | None = None
        while True:
            result = self.apiserver.probe(quiet_unreachable=initial)
            if result is not None:
                last = result
                if result.healthz == HEALTHZ_OK:
                    self.recorder.passed(Check.STATUS_HEALTHZ, '"ok"')
                if result.usable:
                    return True
                # a refused Encrypt *call* may be transient; anything else is not
                if (
                    result.healthz == HEALTHZ_OK
                    and result.encrypt_refused is not Check.ENCRYPT_SUCCEEDS
                ):
                    return False
            if self.clock() >= deadline:
                break
            time.sleep(self.options.poll_interval)
        if last is None:
            self.apiserver.probe()  # records the unreachable Status as the failure
        elif last.healthz != HEALTHZ_OK:
            self.recorder.failed(
                Check.STATUS_HEALTHZ,
                f"healthz {shown(last.healthz)} (must be exactly {HEALTHZ_OK!r}) for "
                f"{self.options.ready_timeout:g} s",
            )
        return False

    def _restart(self) -> bool:
        self.apiserver.restart()
        return self._wait_usable()

    # --- phases (each returns False when the run cannot go on) -----------------------------
    def _writes_across_restarts(self) -> bool:
        count = 0
        for lifetime in range(LIFETIMES):
            if lifetime and not self._restart():
                return False
            for _ in range(self.options.objects):
                count += 1
                path = f"{PATH_PREFIX}/object-{count:05d}"
                data = self.random.randbytes(self.random.randint(1, MAX_OBJECT_BYTES))
                try:
                    self.apiserver.write(path, data)
                except NotReady:  # the write state expired: blocked_by says why
                    return False
                self.expected[path] = data
                if count % 16 == 0:
                    self.apiserver.probe()  # the apiserver keeps polling Status meanwhile
        return True

    def _latency_samples(self) -> bool:
        for _ in range(self.options.samples):
            if not self._restart():
                return False
        paths = sorted(self.expected)
        for index in range(self.options.samples if paths else 0):
            self.apiserver.drop_cache()
            self._read(paths[index % len(paths)], Check.DECRYPT_ROUND_TRIP)
        return True

    def _refusal_probes(self, earlier_key_ids: list[str] | None = None) -> bool:
        current = self.apiserver.current
        if current is None:
            return False
        source, seed = current
        self.timed.label = PROBE
        try:
            probe_refusals(
                self.timed, source, seed, self.recorder, earlier_key_ids=earlier_key_ids or ()
            )
        finally:
            self.timed.label = SERIAL
        return True

    def _cold_start_burst(self) -> bool:
        check = Check.COLD_START_BURST
        if not self._restart():
            return False
        paths = list(self.expected)
        self.random.shuffle(paths)
        threads = max(1, min(self.options.concurrency, len(paths)))
        barrier = threading.Barrier(threads)
        lock = threading.Lock()
        decrypts_before = self.timed.calls["decrypt"]

        def next_path() -> str | None:
            with lock:
                return paths.pop() if paths else None

        finished: list[bool] = []  # one entry per judged read (list.append is atomic)

        def reader() -> None:
            try:
                barrier.wait(timeout=30)  # every thread misses the cache at once
            except threading.BrokenBarrierError:
                pass
            while (path := next_path()) is not None:
                finished.append(self._read(path, check))

        self.timed.label = BURST
        started = self.clock()
        workers = [threading.Thread(target=reader, daemon=True) for _ in range(threads)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        elapsed = self.clock() - started
        self.timed.label = SERIAL
        decrypts = self.timed.calls["decrypt"] - decrypts_before
        seeds = len({stored.source for stored in self.apiserver.store.values()})
        burst = latency_summary(self.timed.samples("decrypt", BURST))
        if len(finished) != len(self.expected):  # a reader died: a bug, never a pass
            self.recorder.failed(check, f"{len(self.expected) - len(finished)} reads never ended")
        self.recorder.passed(
            check,
            f"{len(self.expected)} reads by {threads} threads in {elapsed:.2f} s: {decrypts} "
            f"Decrypts for {seeds} seeds ({max(0, decrypts - seeds)} concurrent duplicates), "
            f"p99 {burst.get('p99', 0):.1f} ms",
        )
        return True

    def _read(self, path: str, check: Check) -> bool:
        """Read *path* and compare it; a failure is *check*'s unless its cause has its own."""
        try:
            data = self.apiserver.read(path).data
        except WrongPlaintext:  # recorded as decrypt-round-trip by the emulation
            if check is not Check.DECRYPT_ROUND_TRIP:
                self.recorder.blocked(check, Check.DECRYPT_ROUND_TRIP)
            return False
        except DecryptRefused as error:
            self.recorder.failed(check, f"a read failed: {error}")
            return False
        except NotReady as error:
            self.recorder.blocked(check, error.blocked_by)
            return False
        if data != self.expected[path]:  # AES-GCM makes this unreachable; never assume it
            self.recorder.failed(check, "an object read back other bytes than were written")
            return False
        return True

    def _rotation(self) -> bool:
        check = Check.ROTATION
        key_ids = self.apiserver.key_ids
        if self.options.rotate is None and len(key_ids) > 1:
            return self._migrate_after_rotation()  # the key_id changed during the run
        if self.options.rotate is None and not self.options.expect_rotation:
            self.recorder.skipped(
                check,
                "no rotation observed (--rotate-command rotates the key mid-run; "
                "--expect-rotation requires one)",
            )
            return True
        key_before = key_ids[-1]
        if self.options.rotate is not None:
            try:
                self.options.rotate()
            except RotateFailed as error:
                self.recorder.failed(check, f"the rotate hook failed: {error}")
                return True
        if not self._await_key_id_change(key_before):
            self.recorder.failed(
                check, f"no key_id change within {self.options.rotation_timeout:g} s"
            )
            return True
        return self._migrate_after_rotation()

    def _await_key_id_change(self, key_before: str) -> bool:
        deadline = self.clock() + self.options.rotation_timeout
        while self.clock() < deadline:
            result = self.apiserver.probe()
            if result is not None and result.usable and result.key_id != key_before:
                return True
            time.sleep(self.options.poll_interval)
        return False

    def _migrate_after_rotation(self) -> bool:
        check = Check.ROTATION
        current = self.apiserver.current
        if current is None:
            self.recorder.blocked(check, self.apiserver.blocked_by)
            return False
        new_key_id = current[0].key_id
        old = [p for p, o in self.apiserver.store.items() if o.source.key_id != new_key_id]
        for index in range(ROTATION_WRITES):
            path = f"{PATH_PREFIX}/rotated-{index:05d}"
            data = self.random.randbytes(self.random.randint(1, MAX_OBJECT_BYTES))
            self.apiserver.write(path, data)
            self.expected[path] = data
        # a cold cache: every old object's seed goes back through Decrypt with its old key_id
        self.apiserver.drop_cache()
        if not all(self._read(path, check) for path in sorted(old)):
            return True
        rewritten = self.apiserver.migrate()
        self.apiserver.drop_cache()
        if not all(self._read(path, check) for path in sorted(self.expected)):
            return True
        still_stale = sum(o.source.key_id != new_key_id for o in self.apiserver.store.values())
        if still_stale or rewritten != len(old):
            self.recorder.failed(check, f"{still_stale} object(s) still stale after migrating")
            return True
        self._refusal_probes(earlier_key_ids=self.apiserver.key_ids[:-1])
        self.recorder.passed(
            check,
            f"{len(old)} stale object(s) read under earlier key_id(s) after the change and "
            f"migrated; all {len(self.expected)} read back under the new key_id",
        )
        return True

    def _final_probes(self) -> bool:
        for _ in range(FINAL_PROBES):
            time.sleep(self.options.poll_interval)
            self.apiserver.probe()
        return True

    # --- latency targets ------------------------------------------------------------------
    def _judge_latency(self) -> None:
        targets = (
            (Check.ENCRYPT_LATENCY, "encrypt", ENCRYPT_LATENCY_TARGET),
            (Check.DECRYPT_LATENCY, "decrypt", DECRYPT_LATENCY_TARGET),
        )
        for check, method, target in targets:
            samples = self.timed.samples(method, SERIAL)
            if not samples:
                continue  # blocked at the end, with everything else not reached
            summary = latency_summary(samples)
            detail = (
                f"p99 {summary['p99']:.1f} ms (target < {target * 1000:.0f} ms; p50 "
                f"{summary['p50']:.1f} ms, max {summary['max']:.1f} ms, "
                f"{summary['count']} serial calls)"
            )
            if summary["p99"] < target * 1000:
                self.recorder.passed(check, detail)
            else:
                self.recorder.missed(check, detail)
