"""Checks one row of the OpenBao answer table against a real call, column by column.

Used by ``tests/integration/test_health_answers.py``: :class:`Harness` builds Transit clients
on fresh pools and breakers and :meth:`Harness.check` verifies the error class and
``error_class``, the gRPC code (:data:`CODE`, written out independently of ``errors.py``), the
Status reason, the breaker effect and the retry of a row.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest

from _support.fake_openbao import FakeBao, Reply
from _support.leaks import assert_clean
from bao_kms.errors import KmsError, grpc_status
from bao_kms.openbao import TokenFileAuth, TransitClient, Transport, make_pool
from bao_kms.openbao.answers import Answer, Breaker, Retry, answer_of
from bao_kms.openbao.breaker import CLOSED, OPEN, CircuitBreaker
from bao_kms.openbao.connections import ConnectionPool
from bao_kms.reasons import Reason
from bao_kms.status import failure_reason

AAD = base64.b64encode(b'{"aad_version":"v1"}').decode()
SEED = os.urandom(32)
#: what the second address answers for every path: enough for each call to succeed
GOOD = {
    "data": {
        "ciphertext": "vault:v1:" + base64.b64encode(os.urandom(60)).decode(),
        "key_version": 1,
        "plaintext": base64.b64encode(SEED).decode(),
        "type": "aes256-gcm96",
        "derived": False,
        "exportable": False,
        "allow_plaintext_backup": False,
        "deletion_allowed": False,
        "latest_version": 1,
        "min_decryption_version": 1,
        "min_encryption_version": 0,
        "min_available_version": 0,
        "keys": {"1": 1_700_000_000},
        "disable_upsert": True,
    }
}
#: the codes README's table shows, written out so a change to errors.py is seen here too
Code = grpc.StatusCode
CODE = {
    **dict.fromkeys(
        [Answer.CONNECTION_FAILED, Answer.TIMEOUT, Answer.TLS_FAILED, Answer.TLS_UNTRUSTED],
        Code.UNAVAILABLE,
    ),
    **dict.fromkeys(
        [Answer.SERVER_ERROR, Answer.SEALED, Answer.RATE_LIMITED, Answer.PRECONDITION_FAILED],
        Code.UNAVAILABLE,
    ),
    **dict.fromkeys([Answer.REDIRECT, Answer.BAD_RESPONSE, Answer.CIRCUIT_OPEN], Code.UNAVAILABLE),
    **dict.fromkeys(
        [Answer.CIPHERTEXT_UNAUTHENTIC, Answer.CIPHERTEXT_MALFORMED], Code.INVALID_ARGUMENT
    ),
    **dict.fromkeys(
        [Answer.KEY_VERSION_REJECTED, Answer.NOT_FOUND, Answer.BAD_REQUEST],
        Code.FAILED_PRECONDITION,
    ),
    **dict.fromkeys(
        [Answer.UNAUTHENTICATED, Answer.TOKEN_REJECTED, Answer.NO_TOKEN], Code.UNAUTHENTICATED
    ),
    Answer.PERMISSION_DENIED: Code.PERMISSION_DENIED,
    Answer.DEADLINE: Code.DEADLINE_EXCEEDED,
}

#: the token sent to the scripted server (never shown in a message either)
FAKE_TOKEN = "s.fake-token-for-the-answer-table"
#: (address, token, ca_file) -> a TransitClient call that meets the answer
Call = Callable[[TransitClient], Any]


class Harness:
    """Builds clients on a fresh pool and breaker; checks one row."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.pools: list[ConnectionPool] = []
        self.secrets: list[str] = []

    def client(
        self,
        *addresses: str,
        token: str,
        mount: str = "transit",
        key: str = "kms",
        ca_file: Path | None = None,
        timeout: float = 2.0,
        breaker: CircuitBreaker | None = None,
    ) -> TransitClient:
        token_file = self.tmp_path / f"token-{len(self.pools)}"
        token_file.write_text(token)
        token_file.chmod(0o600)
        self.secrets.append(token) if token else None
        pool = make_pool(ca_file=ca_file)
        self.pools.append(pool)
        transport = Transport(
            list(addresses),
            TokenFileAuth(token_file),
            pool=pool,
            timeout=timeout,
            breaker=breaker or CircuitBreaker(2, 60.0),
        )
        return TransitClient(transport, mount, key)

    def check(
        self,
        answer: Answer,
        call: Call,
        *addresses: str,
        token: str,
        retry_through: FakeBao | None = None,
        **options: Any,
    ) -> KmsError:
        breaker = CircuitBreaker(2, 60.0)
        breaker.record_failure()  # one failure counted already: the row decides what follows
        client = self.client(*addresses, token=token, breaker=breaker, **options)
        with pytest.raises(KmsError) as info:
            call(client)
        error = info.value
        assert answer_of(error) is answer, f"{type(error).__name__}: {error}"
        # exactly the row's class, or an auth method's subclass saying why there is no token
        assert type(error) is answer.error or answer is Answer.NO_TOKEN, type(error)
        assert isinstance(error, answer.error) and error.error_class in ("", answer.value)
        assert grpc_status(error)[0] is CODE[answer]
        reason = failure_reason(error, Reason.METADATA_READ_FAILED)
        if answer is Answer.NO_TOKEN:  # the auth method's own reason says why
            assert reason in (Reason.AUTH_CREDENTIAL_INVALID, Reason.AUTH_LOGIN_REFUSED)
        else:
            assert reason == (answer.status_reason or Reason.METADATA_READ_FAILED)
        assert_clean(error, [*self.secrets, "kms-answers", "no-such-key"])
        if answer.breaker is Breaker.COUNTS:
            assert breaker.state == OPEN
        elif answer.breaker is Breaker.RESETS:
            assert breaker.state == CLOSED and breaker._failures == 0
        elif answer.breaker is Breaker.INCONCLUSIVE:
            assert breaker.state == CLOSED and breaker._failures == 1
        if retry_through is not None:
            self.check_retry(answer, call, *addresses, token=token, fake=retry_through, **options)
        return error

    def check_retry(
        self, answer: Answer, call: Call, *addresses: str, token: str, fake: FakeBao, **options: Any
    ) -> None:
        fake.reply(Reply(200, GOOD))
        before = len(fake.requests)
        client = self.client(*addresses, fake.address, token=token, **options)
        try:
            call(client)
        except KmsError as error:
            assert answer_of(error) is answer
        went_on = len(fake.requests) > before
        assert went_on is (answer.retry is Retry.NEXT_ADDRESS), answer

    def close(self) -> None:
        for pool in self.pools:
            pool.clear()
