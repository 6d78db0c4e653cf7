"""A cold-start storm through the provider's socket, against the real OpenBao.

Concurrent Decrypts of distinct and duplicate DEK seeds, tampered ciphertexts among them in
the same batches: each tampered call is INVALID_ARGUMENT, every other one gets its own seed,
and the counting pool shows how few Transit requests it took. With batching off, each Decrypt
is one request (the comparison the benchmarks publish).
"""

from __future__ import annotations

import base64
import os
import random
import threading
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest

pytestmark = [pytest.mark.openbao, pytest.mark.timeout(120)]

WAVE = 32


def _tampered(ciphertext: bytes) -> bytes:
    payload = bytearray(base64.b64decode(ciphertext[9:]))
    payload[20] ^= 0x01
    return ciphertext[:9] + base64.b64encode(bytes(payload))


def _storm(running, objects, bad, copies: int):
    """Waves of WAVE calls released together, each object *copies* times in its wave; returns
    (what each call gave, the work list)."""
    jobs = [(index, index in bad and random.random() < 0.5) for index in range(len(objects))]
    random.shuffle(jobs)
    work = [job for job in jobs for _ in range(copies)]
    start = threading.Barrier(WAVE)

    def decrypt(job):
        index, use_bad = job
        encrypted = objects[index][1]
        ciphertext = bad[index] if use_bad else encrypted.ciphertext
        start.wait(10)
        try:
            return running.client.decrypt(ciphertext, encrypted.key_id, encrypted.annotations)
        except grpc.RpcError as error:
            return error.code()

    with ThreadPoolExecutor(WAVE) as pool:
        return list(pool.map(decrypt, work)), work


@pytest.fixture
def sealed(start_provider):
    def make(**options):
        running = start_provider(**options)
        seeds = [os.urandom(32) for _ in range(64)]
        objects = [(seed, running.client.encrypt(seed)) for seed in seeds]
        bad = {index: _tampered(objects[index][1].ciphertext) for index in range(0, 64, 5)}
        running.pool.reset()
        return running, objects, bad

    return make


def test_a_mixed_storm_answers_each_call_its_own(sealed):
    running, objects, bad = sealed()
    results, work = _storm(running, objects, bad, copies=2)
    for (index, use_bad), result in zip(work, results, strict=True):
        if use_bad:
            assert result is grpc.StatusCode.INVALID_ARGUMENT
        else:
            assert result.plaintext == objects[index][0]
    distinct = len(set(work))
    requests = running.pool.count("transit/decrypt/kms")
    # batched and coalesced: well under the Transit requests one per Decrypt would take (how
    # far under depends on thread timing on a busy machine; a quarter is typical)
    assert requests <= len(work) / 2
    assert requests < distinct
    assert running.client.status().healthz == "ok"  # tampered items are no OpenBao trouble


def test_without_batching_each_decrypt_is_one_request(sealed):
    running, objects, bad = sealed(openbao_settings={"decryptBatching": False})
    results, work = _storm(running, objects, {}, copies=1)
    assert [result.plaintext for result in results] == [objects[i][0] for i, _ in work]
    assert running.pool.count("transit/decrypt/kms") == len(work)


@pytest.mark.parametrize(
    ("settings", "linger", "cap"),
    [({}, 0.005, 128), ({"decryptBatchLinger": "0s", "decryptBatchMax": 16}, 0.0, 16)],
)
def test_the_batching_settings_reach_the_batcher(start_provider, settings, linger, cap):
    running = start_provider(openbao_settings=settings)
    batcher = running.provider.batcher
    assert (batcher.linger, batcher.max_batch) == (linger, cap)
