"""Decrypt requests kube-apiserver must never get an answer to: tampered, altered, foreign.

Each probe starts from a genuine stored seed (ciphertext, key_id, annotations, and the seed
itself, which the run remembers) and changes one thing. A refusal is any non-OK gRPC code
(the report names which); an OK answer is a failure, and an OK answer with other bytes than
the seed is called out as wrong plaintext, the worst outcome there is.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable, Mapping

import grpc

from .apiserver import DekSource, rpc_code
from .checks import KEY_ID_MAX_BYTES, Check
from .plugin import KmsPlugin
from .report import Recorder

OK = "OK"


def probe_refusals(
    plugin: KmsPlugin,
    source: DekSource,
    seed: bytes,
    recorder: Recorder,
    *,
    earlier_key_ids: Iterable[str] = (),
) -> None:
    """Run every refusal probe on *source* and record the four refusal checks."""
    _tampered_ciphertext(plugin, source, seed, recorder)
    _altered_annotations(plugin, source, seed, recorder)
    _malformed_key_ids(plugin, source, seed, recorder)
    others = [same_shape_key_id(source.key_id)]
    others += [key_id for key_id in earlier_key_ids if key_id != source.key_id]
    _other_key_ids(plugin, source, seed, recorder, dict.fromkeys(others))


def flip_byte(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def same_shape_key_id(key_id: str) -> str:
    """*key_id* with its middle letter or digit replaced by another of the same kind that
    already occurs in it: same length and alphabet, so the plugin's parser still accepts it
    (for base64 or hex key_ids the middle character carries all its bits)."""
    positions = [i for i, char in enumerate(key_id) if char.isascii() and char.isalnum()]
    if not positions:
        return key_id + "0"
    index = positions[len(positions) // 2]
    char = key_id[index]
    kind = _kind(char)
    choices = sorted({c for c in key_id if c != char and c.isascii() and _kind(c) == kind})
    if not choices:
        choices = [c for c in {"digit": "01", "lower": "ab", "upper": "AB"}[kind] if c != char]
    return key_id[:index] + choices[0] + key_id[index + 1 :]


def _kind(char: str) -> str:
    return "digit" if char.isdigit() else "lower" if char.islower() else "upper"


def _attempt(
    plugin: KmsPlugin, ciphertext: bytes, key_id: str, annotations: Mapping[str, bytes]
) -> tuple[str, bytes]:
    """(``"OK"``, plaintext) or (the refusal's code name, b"")."""
    try:
        response = plugin.decrypt(ciphertext, key_id, dict(annotations), "kms-conformance-probe")
    except grpc.RpcError as error:
        return rpc_code(error), b""
    return OK, bytes(response.plaintext)


def _codes(codes: Iterable[str]) -> str:
    counts = collections.Counter(codes)
    return ", ".join(f"{code} x{n}" if n > 1 else code for code, n in sorted(counts.items()))


def _judge_refusals(
    recorder: Recorder,
    check: Check,
    attempts: list[tuple[str, bytes]],
    seed: bytes,
    what: str,
) -> None:
    """Every attempt must be refused; OK is a failure (wrong plaintext the worst one)."""
    wrong = sum(code == OK and plaintext != seed for code, plaintext in attempts)
    accepted = sum(code == OK and plaintext == seed for code, plaintext in attempts)
    if wrong:
        recorder.failed(check, f"{wrong} {what} answered OK with other plaintext")
    if accepted:
        recorder.failed(check, f"{accepted} {what} accepted (answered OK)")
    if not wrong and not accepted:
        codes = _codes(code for code, _ in attempts)
        recorder.passed(check, f"{len(attempts)} {what} refused ({codes})")


def _tampered_ciphertext(
    plugin: KmsPlugin, source: DekSource, seed: bytes, recorder: Recorder
) -> None:
    # a quarter, half and three quarters in: away from ends where an encoding may carry
    # ignored bits (base64 padding) and inside any version prefix
    size = len(source.ciphertext)
    positions = sorted({size // 4, size // 2, (3 * size) // 4})
    attempts = [
        _attempt(plugin, flip_byte(source.ciphertext, i), source.key_id, source.annotation_map())
        for i in positions
    ]
    _judge_refusals(
        recorder,
        Check.DECRYPT_REFUSES_TAMPERED_CIPHERTEXT,
        attempts,
        seed,
        "ciphertext(s) with one byte flipped",
    )


def _altered_annotations(
    plugin: KmsPlugin, source: DekSource, seed: bytes, recorder: Recorder
) -> None:
    check = Check.DECRYPT_REFUSES_ALTERED_ANNOTATIONS
    if not source.annotations:
        recorder.skipped(check, "the plugin returns no annotations")
        return
    codes: list[str] = []
    accepted = 0
    for key, value in source.annotations:
        altered = source.annotation_map()
        altered[key] = flip_byte(value, len(value) - 1) if value else b"\x01"
        code, plaintext = _attempt(plugin, source.ciphertext, source.key_id, altered)
        if code == OK and plaintext != seed:
            recorder.failed(check, "an altered annotation was answered with other plaintext")
        elif code == OK:
            accepted += 1
        else:
            codes.append(code)
    total = len(source.annotations)
    if not codes:
        recorder.failed(
            check, f"none of {total} annotation(s) is bound: every altered one was accepted"
        )
        return
    note = f"{len(codes)} of {total} altered annotation(s) refused ({_codes(codes)})"
    if accepted:
        note += f"; {accepted} informational (accepted with the exact plaintext)"
    recorder.passed(check, note)


def _malformed_key_ids(
    plugin: KmsPlugin, source: DekSource, seed: bytes, recorder: Recorder
) -> None:
    malformed = [
        "",
        "k" * (KEY_ID_MAX_BYTES + 1),
        source.key_id[::-1] if source.key_id[::-1] != source.key_id else source.key_id + "~",
        source.key_id + " ",
    ]
    attempts = [
        _attempt(plugin, source.ciphertext, key_id, source.annotation_map()) for key_id in malformed
    ]
    _judge_refusals(
        recorder,
        Check.DECRYPT_REFUSES_MALFORMED_KEY_ID,
        attempts,
        seed,
        "malformed key_id(s) (empty, oversized, garbled)",
    )


def _other_key_ids(
    plugin: KmsPlugin,
    source: DekSource,
    seed: bytes,
    recorder: Recorder,
    key_ids: Iterable[str],
) -> None:
    attempts = [
        _attempt(plugin, source.ciphertext, key_id, source.annotation_map()) for key_id in key_ids
    ]
    _judge_refusals(
        recorder,
        Check.DECRYPT_REFUSES_OTHER_KEY_ID,
        attempts,
        seed,
        "well-formed other key_id(s)",
    )
