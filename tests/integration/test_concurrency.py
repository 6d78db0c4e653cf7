"""A cold-start burst: hundreds of concurrent Decrypts, with duplicates, all answered right."""

from __future__ import annotations

import os
import random
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.openbao


def test_200_concurrent_decrypts_with_duplicates(start_provider):
    running = start_provider()
    seeds = [os.urandom(32) for _ in range(40)]
    objects = [(seed, running.client.encrypt(seed)) for seed in seeds]
    work = [random.choice(objects) for _ in range(200)]

    def decrypt(item):
        seed, encrypted = item
        result = running.client.decrypt(
            encrypted.ciphertext, encrypted.key_id, encrypted.annotations
        )
        return result.plaintext == seed

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(decrypt, work))
    assert results == [True] * 200
