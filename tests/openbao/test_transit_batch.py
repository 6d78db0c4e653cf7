"""``TransitClient.decrypt_batch`` and the decrypt batcher, against the fake and the real OpenBao.

The fake checks the body sent and how each answer is read; the real ``bao`` 2.7 server shows
what OpenBao really does: a batch with a failed item is answered HTTP 400 with every item's
result, a batch over its JSON complexity limit is refused as a whole, and a concurrent storm
through the batcher costs far fewer requests than Decrypts, duplicates never more than once.
"""

from __future__ import annotations

import base64
import os
import random
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from _support import CountingPool
from _support.fake_openbao import FakeBao, Reply, errors_body
from _support.leaks import KEY, MOUNT, TOKEN, assert_clean, expect_error
from bao_kms import _codec
from bao_kms.embedded import EmbeddedOpenBao
from bao_kms.errors import (
    CiphertextAuthenticationFailed,
    InvalidCiphertext,
    KmsError,
    OpenBaoBadResponse,
    OpenBaoRejected,
    OpenBaoUnavailable,
)
from bao_kms.openbao import TokenFileAuth, TransitClient, Transport, make_pool
from bao_kms.openbao.batcher import OPENBAO_MAX_BATCH, DecryptBatcher

pytestmark = pytest.mark.timeout(60)

AAD = base64.b64encode(b'{"aad_version":"v1","key_version":"1"}').decode()
OTHER_AAD = base64.b64encode(b'{"aad_version":"v1","key_version":"2"}').decode()
CIPHERTEXT = b"vault:v1:SpZrMRIOc9FFzbVgSo4WUJOyLiKvukM3sswvhAhxHG9msLt5rug+7ejgTTWDQBoeWXQJD0yW"
SEED = bytes(range(32))


def tampered(ciphertext: bytes) -> bytes:
    payload = bytearray(base64.b64decode(ciphertext[9:]))
    payload[20] ^= 0x01
    return ciphertext[:9] + base64.b64encode(bytes(payload))


def batch_answer(*results: dict[str, str]) -> dict[str, object]:
    return {"request_id": "x", "data": {"batch_results": list(results)}, "warnings": None}


OK = {"plaintext": base64.b64encode(SEED).decode(), "reference": ""}


def failed(text: str) -> dict[str, str]:
    return {"plaintext": "", "error": text, "reference": ""}


# --- against the fake ----------------------------------------------------------------------------


@pytest.fixture
def client(fake: FakeBao, make_transport: Callable[..., Transport]) -> TransitClient:
    return TransitClient(make_transport(fake.address), MOUNT, KEY)


def test_one_request_for_the_batch(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(200, batch_answer(OK, OK)))
    items = [(CIPHERTEXT, AAD), (CIPHERTEXT, OTHER_AAD)]
    assert client.decrypt_batch(items) == [SEED, SEED]
    (seen,) = fake.requests
    assert (seen.method, seen.path) == ("POST", f"/v1/{MOUNT}/decrypt/{KEY}")
    assert seen.body == _codec.decrypt_batch_request_body(items)


def test_each_failed_item_is_classified_alone(fake: FakeBao, client: TransitClient) -> None:
    secret_text = f"cipher: message authentication failed for {KEY} on {MOUNT}"
    fake.reply(
        Reply(
            400,
            batch_answer(
                OK,
                failed(secret_text),
                failed("invalid ciphertext: version is too new"),
                failed("ciphertext or signature version is disallowed by policy (too old)"),
            ),
        )
    )
    outcomes = client.decrypt_batch([(CIPHERTEXT, AAD)] * 4)
    assert outcomes[0] == SEED
    assert [type(outcome) for outcome in outcomes[1:]] == [
        CiphertextAuthenticationFailed,
        InvalidCiphertext,
        OpenBaoRejected,
    ]
    for outcome in outcomes[1:]:
        assert isinstance(outcome, KmsError)
        assert_clean(outcome, (TOKEN, KEY, MOUNT, secret_text))


def test_a_refusal_of_the_whole_request_raises(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(400, errors_body("refused JSON input due to high complexity")))
    expect_error(OpenBaoRejected, client.decrypt_batch, [(CIPHERTEXT, AAD)])


@pytest.mark.parametrize(
    "reply",
    [
        Reply(200, batch_answer(OK)),  # one result for two items
        Reply(200, {"data": {"plaintext": "QUJD"}}),  # a single decrypt's answer
        Reply(400, b"not json"),
    ],
)
def test_an_answer_that_does_not_fit_the_batch_is_refused(
    reply: Reply, fake: FakeBao, client: TransitClient
) -> None:
    fake.reply(reply)
    with pytest.raises((OpenBaoBadResponse, OpenBaoRejected)):
        client.decrypt_batch([(CIPHERTEXT, AAD), (CIPHERTEXT, AAD)])


def test_a_malformed_item_is_never_sent(fake: FakeBao, client: TransitClient) -> None:
    expect_error(InvalidCiphertext, client.decrypt_batch, [(CIPHERTEXT, AAD), (b"vault:v1:", AAD)])
    assert fake.requests == []


def test_a_server_error_fails_the_batch(fake: FakeBao, client: TransitClient) -> None:
    fake.reply(Reply(503, errors_body("internal error")))
    with pytest.raises(OpenBaoUnavailable):
        client.decrypt_batch([(CIPHERTEXT, AAD)])


# --- against the real server ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def bao() -> Iterator[EmbeddedOpenBao]:
    with EmbeddedOpenBao() as server:
        server.setup_transit()
        yield server


@pytest.fixture
def counting_pool() -> Iterator[CountingPool]:
    pool = make_pool(ca_file=None, maxsize=8, pool_class=CountingPool)
    assert isinstance(pool, CountingPool)
    yield pool
    pool.clear()


@pytest.fixture
def real_client(bao: EmbeddedOpenBao, counting_pool: CountingPool, tmp_path: Path) -> TransitClient:
    token = tmp_path / "token"
    token.write_text(bao.root_token)
    token.chmod(0o600)
    transport = Transport([bao.address], TokenFileAuth(token), pool=counting_pool, timeout=5.0)
    return TransitClient(transport, "transit", "kms")


@pytest.fixture
def encrypted(real_client: TransitClient) -> list[tuple[bytes, bytes]]:
    """(seed, ciphertext) pairs under AAD."""
    seeds = [os.urandom(32) for _ in range(64)]  # storm: 256 calls, 8 waves of 32
    return [(seed, real_client.encrypt(seed, 1, AAD)) for seed in seeds]


@pytest.mark.openbao
def test_real_batch_with_tampered_items(
    real_client: TransitClient, encrypted: list[tuple[bytes, bytes]]
) -> None:
    items = [(ciphertext, AAD) for _, ciphertext in encrypted[:6]]
    items[1] = (tampered(items[1][0]), AAD)
    items[3] = (items[3][0], OTHER_AAD)
    items[4] = (b"vault:v9:" + items[4][0][9:], AAD)
    outcomes = real_client.decrypt_batch(items)
    assert outcomes[0] == encrypted[0][0]
    assert outcomes[2] == encrypted[2][0]
    assert outcomes[5] == encrypted[5][0]
    assert type(outcomes[1]) is CiphertextAuthenticationFailed
    assert type(outcomes[3]) is CiphertextAuthenticationFailed
    assert type(outcomes[4]) is InvalidCiphertext


@pytest.mark.openbao
def test_real_batch_where_every_item_fails(real_client: TransitClient, encrypted) -> None:
    items = [(tampered(ciphertext), AAD) for _, ciphertext in encrypted[:2]]
    outcomes = real_client.decrypt_batch(items)
    assert [type(outcome) for outcome in outcomes] == [CiphertextAuthenticationFailed] * 2


@pytest.mark.openbao
def test_openbaos_json_limit_sits_above_our_largest_batch(
    real_client: TransitClient, encrypted: list[tuple[bytes, bytes]]
) -> None:
    """OpenBao 2.7 takes 249 items with AAD and refuses 250: the cap must stay below."""
    item = (encrypted[0][1], AAD)
    assert real_client.decrypt_batch([item] * OPENBAO_MAX_BATCH) == [encrypted[0][0]] * 249
    with pytest.raises(OpenBaoRejected):
        real_client.decrypt_batch([item] * (OPENBAO_MAX_BATCH + 1))


class CountingItems:
    """The real client, counting the ciphertexts it sends (a batch counts each of its items)."""

    def __init__(self, client: TransitClient) -> None:
        self._client = client
        self.items: list[bytes] = []

    def encrypt(self, *args: Any, **kwargs: Any) -> bytes:
        return self._client.encrypt(*args, **kwargs)

    def decrypt(self, ciphertext: bytes, associated_data: str, **kwargs: Any) -> bytes:
        self.items.append(ciphertext)
        return self._client.decrypt(ciphertext, associated_data, **kwargs)

    def decrypt_batch(self, items: Any, **kwargs: Any) -> list[bytes | KmsError]:
        self.items.extend(ciphertext for ciphertext, _ in items)
        return self._client.decrypt_batch(items, **kwargs)


@pytest.mark.openbao
def test_a_storm_through_the_batcher(
    real_client: TransitClient, counting_pool: CountingPool, encrypted
) -> None:
    """Concurrent distinct and duplicate Decrypts with tampered ones among them: each answer is
    its own, concurrent duplicates share an item, and requests are far fewer than calls."""
    counting = CountingItems(real_client)
    batcher = DecryptBatcher(counting, max_batch=32)
    bad = {index: tampered(ciphertext) for index, (_, ciphertext) in enumerate(encrypted[:8])}
    jobs = [(index, random.random() < 0.5) for index in range(len(encrypted))]
    random.shuffle(jobs)
    # Waves of 32 calls released at once, each call with three duplicates in its wave: the
    # cold-start shape (concurrent misses of one DEK), and all the coalescing can promise.
    work = [job for job in jobs for _ in range(4)]
    start = threading.Barrier(32)
    counting_pool.reset()

    def decrypt(job: tuple[int, bool]) -> bytes | type[KmsError]:
        index, use_bad = job
        ciphertext = bad[index] if use_bad and index in bad else encrypted[index][1]
        start.wait(10)
        try:
            return batcher.decrypt(ciphertext, AAD)
        except KmsError as error:
            return type(error)

    try:
        with ThreadPoolExecutor(32) as pool:
            results = list(pool.map(decrypt, work))
    finally:
        batcher.close()
    for (index, use_bad), result in zip(work, results, strict=True):
        if use_bad and index in bad:
            assert result is CiphertextAuthenticationFailed
        else:
            assert result == encrypted[index][0]
    distinct = len({(index, use_bad and index in bad) for index, use_bad in work})
    assert len(set(counting.items)) == distinct  # every one reached OpenBao: no cache
    # A duplicate that arrives after its original was answered is sent again (no cache), so
    # equality is not promised; near it is: the rest were coalesced.
    assert distinct <= len(counting.items) <= distinct * 1.25
    assert counting_pool.count("transit/decrypt/kms") < distinct / 2
