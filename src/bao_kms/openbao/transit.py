"""Transit calls for one key: encrypt/decrypt on the request path, metadata for the probes.

Request bodies and response parsing on the hot path come from the codec selector, so the
compiled twin serves them when it is built. Paths are built once here; nothing that names the
mount or the key ever reaches an error message.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import quote

import orjson

from .. import _codec
from ..errors import (
    CiphertextAuthenticationFailed,
    InvalidCiphertext,
    KmsError,
    OpenBaoBadResponse,
)
from . import _http_errors
from .key_metadata import KeyMetadata, parse_key_metadata, parse_keys_config
from .transport import Transport

__all__ = ["KeyMetadata", "TransitClient"]

#: sys/health answers these for states that are not failures (standby, DR secondary,
#: performance standby, not initialised, sealed): read them like a 200
_HEALTH_STATUSES = frozenset({429, 472, 473, 501, 503})
_HEALTH_PATH = "sys/health?standbyok=true&perfstandbyok=true"
#: a batch with any failed item is answered HTTP 400 carrying every item's result
_BATCH_ANSWERED = frozenset({400})


def classify_decrypt_400(body: bytes) -> KmsError:
    """Tell a ciphertext that fails authentication or parsing from other refusals."""
    texts = _http_errors.error_texts(body)
    if any("message authentication failed" in text for text in texts):
        return CiphertextAuthenticationFailed("ciphertext failed authentication")
    if any("invalid ciphertext" in text for text in texts):
        return InvalidCiphertext("OpenBao refused the ciphertext as malformed")
    return _http_errors.classify_400(body)  # a version restriction, a missing key, other


def _item_error(text: str) -> KmsError:
    """The error for one failed batch item, judged as a single decrypt's 400 would be."""
    return classify_decrypt_400(orjson.dumps({"errors": [text]}))


class TransitClient:
    """One Transit key on one mount, reached through a :class:`Transport`."""

    def __init__(
        self,
        transport: Transport,
        mount_path: str,
        key_name: str,
        *,
        exempt_from_breaker: bool = False,
    ) -> None:
        self.transport = transport
        #: the status probes' client: must reach OpenBao even while the breaker is open
        self._exempt = exempt_from_breaker
        mount = quote(mount_path.strip("/"), safe="/")
        key = quote(key_name, safe="")
        self._encrypt_path = f"{mount}/encrypt/{key}"
        self._decrypt_path = f"{mount}/decrypt/{key}"
        self._key_path = f"{mount}/keys/{key}"
        self._keys_config_path = f"{mount}/config/keys"

    def encrypt(
        self,
        plaintext: bytes,
        key_version: int,
        associated_data: str,
        *,
        deadline: float | None = None,
    ) -> bytes:
        """Ciphertext (``vault:vN:...`` bytes) of *plaintext* under exactly *key_version*."""
        body = _codec.encrypt_request_body(plaintext, key_version, associated_data)
        answer = self.transport.request(
            "POST", self._encrypt_path, body, deadline=deadline, exempt_from_breaker=self._exempt
        )
        ciphertext, version = _codec.parse_encrypt_response(answer)
        if version != key_version:
            raise OpenBaoBadResponse(
                f"Transit encrypted with key version {version}, not the requested {key_version}"
            )
        return ciphertext

    def decrypt(
        self,
        ciphertext: bytes,
        associated_data: str,
        *,
        deadline: float | None = None,
        arrived: float | None = None,
    ) -> bytes:
        """Plaintext of a ``vault:vN:...`` *ciphertext* written with *associated_data*; every
        call is its own request (*arrived* is for ciphers that share calls)."""
        # Cheap, and keeps a malformed value from ever reaching the body encoder or OpenBao.
        _codec.parse_ciphertext_version(ciphertext)
        body = _codec.decrypt_request_body(ciphertext, associated_data)
        answer = self.transport.request(
            "POST",
            self._decrypt_path,
            body,
            deadline=deadline,
            classify_400=classify_decrypt_400,
            exempt_from_breaker=self._exempt,
        )
        return _codec.parse_decrypt_response(answer)

    def decrypt_batch(
        self, items: Sequence[tuple[bytes, str]], *, deadline: float | None = None
    ) -> list[bytes | KmsError]:
        """Several (ciphertext, associated_data) pairs in one Transit ``batch_input`` request.

        One outcome per item, in order: its plaintext, or the error for that item alone (a
        tampered ciphertext fails itself, not its neighbours). A failure of the request as a
        whole raises. Callers keep *items* well below OpenBao's JSON limit (``batcher.py``).
        """
        for ciphertext, _ in items:
            _codec.parse_ciphertext_version(ciphertext)  # as decrypt(): nothing malformed is sent
        answer = self.transport.request(
            "POST",
            self._decrypt_path,
            _codec.decrypt_batch_request_body(items),
            deadline=deadline,
            accept=_BATCH_ANSWERED,
            exempt_from_breaker=self._exempt,
        )
        try:
            outcomes = _codec.parse_decrypt_batch_response(answer, len(items))
        except OpenBaoBadResponse:
            if _http_errors.error_texts(answer):  # a 400 for the whole request, not per item
                raise classify_decrypt_400(answer) from None
            raise
        return [
            outcome if isinstance(outcome, bytes) else _item_error(outcome) for outcome in outcomes
        ]

    def read_key(self, *, deadline: float | None = None) -> KeyMetadata:
        """The key's metadata, strictly parsed."""
        answer = self.transport.request(
            "GET", self._key_path, deadline=deadline, exempt_from_breaker=self._exempt
        )
        return parse_key_metadata(answer)

    def read_keys_config(self, *, deadline: float | None = None) -> bool:
        """The mount's ``disable_upsert`` setting."""
        answer = self.transport.request(
            "GET", self._keys_config_path, deadline=deadline, exempt_from_breaker=self._exempt
        )
        return parse_keys_config(answer)

    def health(self, *, deadline: float | None = None) -> str:
        """``ok``, ``standby``, ``sealed`` or ``uninitialized`` for the server the transport uses.

        Unauthenticated and in the root namespace, as OpenBao requires. The state comes from
        the body, which is the same whichever status code the server chose for it.
        """
        answer = self.transport.request(
            "GET",
            _HEALTH_PATH,
            deadline=deadline,
            accept=_HEALTH_STATUSES,
            anonymous=True,
            root_namespace=True,
        )
        return _health_state(answer)


def _health_state(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        document = None
    if not isinstance(document, dict):
        raise OpenBaoBadResponse("OpenBao health response is not a JSON object")
    flags = {}
    for name in ("initialized", "sealed", "standby"):
        value = document.get(name)
        if type(value) is not bool:
            raise OpenBaoBadResponse(f"OpenBao health field {name} is missing or not a boolean")
        flags[name] = value
    # A sealed server also reports standby=true, so the order of these tests matters.
    if not flags["initialized"]:
        return "uninitialized"
    if flags["sealed"]:
        return "sealed"
    if flags["standby"]:
        return "standby"
    return "ok"
