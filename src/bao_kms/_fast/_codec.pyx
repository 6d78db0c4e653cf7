# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The hot path compiled: the twin of ``bao_kms._codec_py``, which is its specification.

Same names, signatures, results (byte for byte), exception classes and messages; the parity
tests in ``tests/codec/`` hold the two to that on randomized inputs. Speed comes from byte loops
over ``const unsigned char*`` instead of regular expressions, base64 written straight into the
result object, and request bodies concatenated from pieces whose charset has been checked.

Every fast path is guarded by an exact-type and charset check; whatever fails the guard takes a
slow path that is a transcription of the spec, so even unusual inputs behave identically.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport (
    PyUnicode_AsASCIIString,
    PyUnicode_AsUTF8String,
    PyUnicode_GET_LENGTH,
    PyUnicode_New,
)
from libc.stdint cimport uint64_t
from libc.string cimport memcmp, memcpy

import base64
import binascii
import re
from hashlib import sha256 as _sha256

import orjson

from bao_kms.errors import InvalidAnnotations, InvalidCiphertext, MalformedKeyId, OpenBaoBadResponse


cdef extern from "Python.h":
    # Not declared by Cython's cpython.unicode; both are cheap macros on a ready str.
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)


KEY_ID_PREFIX = "obk2."
KEY_ID_LENGTH = 48
KEY_ID_DOMAIN = "openbao-kubernetes-kms/key-id/v1"

AAD_VERSION = "v1"
AAD_PURPOSE = "kubernetes-etcd-kms-v2"
PROVIDER = "openbao-transit"

ANN_PROVIDER = "provider.kms.openbao.org"
ANN_KEY_ID_HASH = "key-id-hash.kms.openbao.org"
ANN_KEY_VERSION = "transit-key-version.kms.openbao.org"
ANN_MOUNT_HASH = "transit-mount-hash.kms.openbao.org"
ANN_KEY_HASH = "transit-key-hash.kms.openbao.org"
ANN_NAMESPACE_HASH = "openbao-namespace-hash.kms.openbao.org"
ANN_PLUGIN_VERSION = "plugin-version.kms.openbao.org"
ANN_AAD_VERSION = "aad-version.kms.openbao.org"

MAX_PLUGIN_VERSION_LENGTH = 64
MAX_CIPHERTEXT_LENGTH = 1024

# C-level copies: module globals are dictionary look-ups, these are not.
cdef str _KEY_ID_PREFIX = KEY_ID_PREFIX
cdef str _AAD_VERSION = AAD_VERSION
cdef str _PROVIDER = PROVIDER
cdef str _ANN_PROVIDER = ANN_PROVIDER
cdef str _ANN_KEY_ID_HASH = ANN_KEY_ID_HASH
cdef str _ANN_KEY_VERSION = ANN_KEY_VERSION
cdef str _ANN_MOUNT_HASH = ANN_MOUNT_HASH
cdef str _ANN_KEY_HASH = ANN_KEY_HASH
cdef str _ANN_NAMESPACE_HASH = ANN_NAMESPACE_HASH
cdef str _ANN_PLUGIN_VERSION = ANN_PLUGIN_VERSION
cdef str _ANN_AAD_VERSION = ANN_AAD_VERSION
cdef bytes _PROVIDER_BYTES = PROVIDER.encode("ascii")
cdef bytes _AAD_VERSION_BYTES = AAD_VERSION.encode("ascii")
cdef tuple _HASH_ANNOTATIONS = (ANN_KEY_ID_HASH, ANN_MOUNT_HASH, ANN_KEY_HASH, ANN_NAMESPACE_HASH)
cdef frozenset _KNOWN_ANNOTATIONS = frozenset(
    (ANN_PROVIDER, ANN_KEY_VERSION, ANN_PLUGIN_VERSION, ANN_AAD_VERSION, *_HASH_ANNOTATIONS)
)
cdef Py_ssize_t _KEY_ID_LENGTH = KEY_ID_LENGTH
cdef Py_ssize_t _MAX_PLUGIN_VERSION_LENGTH = MAX_PLUGIN_VERSION_LENGTH
cdef Py_ssize_t _MAX_CIPHERTEXT_LENGTH = MAX_CIPHERTEXT_LENGTH

# Messages are built once; they must stay identical to the spec's f-strings.
cdef str _MSG_PREFIX = f"key_id must start with {KEY_ID_PREFIX!r}"
cdef str _MSG_SUFFIX = "key_id suffix must be 43 base64url characters"
cdef str _MSG_NONCANONICAL = "key_id suffix is not a canonical 32-byte encoding"
cdef str _MSG_CT_EMPTY = "ciphertext is empty"
cdef str _MSG_CT_LONG = f"ciphertext is longer than {MAX_CIPHERTEXT_LENGTH} bytes"
cdef str _MSG_CT_SHAPE = "ciphertext is not a Transit vault:vN:<base64> string"
cdef str _MSG_CT_VERSION = "ciphertext version does not match the key version"

# The slow paths only: inputs of unusual types or charsets go through the spec's own logic.
_CIPHERTEXT_RE = re.compile(rb"vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})")
_HASH_RE = re.compile(r"[A-Za-z0-9_-]{43}")

# Go's encoding/json escapes these so JSON can be embedded in HTML; byte compatibility with the
# Go provider means we must too.
_GO_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}

cdef object _dumps = orjson.dumps
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef object _a2b_base64 = binascii.a2b_base64
cdef object _BinasciiError = binascii.Error

# --- byte tables ---------------------------------------------------------------------------------

cdef const char* _STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
cdef signed char _STD_VALUE[256]   # 6-bit value of a standard base64 character, else -1
cdef signed char _URL_VALUE[256]   # same for base64url
cdef unsigned char _JSON_PLAIN[256]  # printable ASCII that any JSON encoder leaves unescaped
cdef unsigned char _GO_PLAIN[256]    # ... and that Go's HTML-safe encoder leaves unescaped too
cdef unsigned char _URL_CHAR[256]    # a base64url character
cdef unsigned char _PRINTABLE[256]   # printable ASCII, 0x20-0x7E: str.isprintable() holds


cdef void _init_tables() noexcept:
    cdef int i
    for i in range(256):
        _STD_VALUE[i] = -1
        _URL_VALUE[i] = -1
        _JSON_PLAIN[i] = 0x20 <= i <= 0x7E and i != c'"' and i != c'\\'
        _GO_PLAIN[i] = _JSON_PLAIN[i] and i != c'<' and i != c'>' and i != c'&'
        _PRINTABLE[i] = 0x20 <= i <= 0x7E
    for i in range(64):
        _STD_VALUE[<unsigned char>_STD_ALPHABET[i]] = i
        _URL_VALUE[<unsigned char>_URL_ALPHABET[i]] = i
    for i in range(256):
        _URL_CHAR[i] = _URL_VALUE[i] >= 0


_init_tables()


cdef inline bint _all_in(const unsigned char* p, Py_ssize_t n, const unsigned char* table) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        if not table[p[i]]:
            return False
    return True


cdef inline uint64_t _has_zero_byte(uint64_t w) noexcept nogil:
    return (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL


cdef bint _json_plain(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """True when every byte is in ``_JSON_PLAIN``; eight bytes per step (request bodies carry a
    ~400-byte AAD, and a byte-table loop over it was a third of ``decrypt_request_body``)."""
    cdef uint64_t w = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if (
            ((w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL)  # a byte < 0x20
            | ((w + 0x0101010101010101ULL) | w) & 0x8080808080808080ULL  # a byte > 0x7E
            | _has_zero_byte(w ^ 0x2222222222222222ULL)  # '"'
            | _has_zero_byte(w ^ 0x5C5C5C5C5C5C5C5CULL)  # '\\'
        ):
            return False
        i += 8
    return _all_in(p + i, n - i, _JSON_PLAIN)


cdef inline bint _json_plain_str(object value):
    """True when *value* is an exact, pure-ASCII str that JSON carries unescaped."""
    return (
        type(value) is str
        and PyUnicode_IS_ASCII(value)
        and _json_plain(<const unsigned char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value))
    )


cdef inline bint _ascii_str_in(object value, const unsigned char* table):
    """True when *value* is an exact, pure-ASCII str made only of *table* bytes."""
    return (
        type(value) is str
        and PyUnicode_IS_ASCII(value)
        and _all_in(<const unsigned char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), table)
    )


# --- base64 --------------------------------------------------------------------------------------


cdef inline Py_ssize_t _b64_length(Py_ssize_t n, bint pad) noexcept nogil:
    if pad:
        return (n + 2) // 3 * 4
    return n // 3 * 4 + (0 if n % 3 == 0 else n % 3 + 1)


cdef void _b64_encode(
    const unsigned char* src, Py_ssize_t n, unsigned char* dst, const char* alphabet, bint pad
) noexcept nogil:
    cdef Py_ssize_t i = 0
    cdef Py_ssize_t j = 0
    cdef unsigned int v
    while i + 3 <= n:
        v = (<unsigned int>src[i] << 16) | (<unsigned int>src[i + 1] << 8) | src[i + 2]
        dst[j] = alphabet[v >> 18]
        dst[j + 1] = alphabet[(v >> 12) & 63]
        dst[j + 2] = alphabet[(v >> 6) & 63]
        dst[j + 3] = alphabet[v & 63]
        i += 3
        j += 4
    if n - i == 1:
        v = <unsigned int>src[i] << 16
        dst[j] = alphabet[v >> 18]
        dst[j + 1] = alphabet[(v >> 12) & 63]
        if pad:
            dst[j + 2] = c'='
            dst[j + 3] = c'='
    elif n - i == 2:
        v = (<unsigned int>src[i] << 16) | (<unsigned int>src[i + 1] << 8)
        dst[j] = alphabet[v >> 18]
        dst[j + 1] = alphabet[(v >> 12) & 63]
        dst[j + 2] = alphabet[(v >> 6) & 63]
        if pad:
            dst[j + 3] = c'='


cdef str _b64_str(bytes data, const char* alphabet, bint pad):
    """*data* in base64 as a new ASCII str, written in place (no bytes -> str round trip)."""
    cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
    cdef str result = PyUnicode_New(_b64_length(n, pad), 127)
    _b64_encode(
        <const unsigned char*>PyBytes_AS_STRING(data), n,
        <unsigned char*>PyUnicode_DATA(result), alphabet, pad,
    )
    return result


cdef bytes _b64_decode_simple(const unsigned char* p, Py_ssize_t n):
    """Decode padded standard base64 of the plain shape ``[A-Za-z0-9+/]*`` then 0-2 ``=``,
    length a multiple of 4; None for anything else (the caller then asks binascii, whose strict
    mode has the last word). On this shape strict binascii gives exactly these bytes."""
    cdef Py_ssize_t i, j, pads, size
    cdef unsigned int v
    cdef signed char q0, q1, q2, q3
    if n == 0 or n % 4:
        return None
    for i in range(n - 2):
        if _STD_VALUE[p[i]] < 0:
            return None
    if _STD_VALUE[p[n - 2]] >= 0:
        pads = 0 if _STD_VALUE[p[n - 1]] >= 0 else (1 if p[n - 1] == c'=' else -1)
    elif p[n - 2] == c'=' and p[n - 1] == c'=':
        pads = 2
    else:
        pads = -1
    if pads < 0:
        return None
    size = n // 4 * 3 - pads
    cdef bytes result = PyBytes_FromStringAndSize(NULL, size)
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(result)
    j = 0
    for i in range(0, n, 4):
        q0 = _STD_VALUE[p[i]]
        q1 = _STD_VALUE[p[i + 1]]
        q2 = _STD_VALUE[p[i + 2]] if p[i + 2] != c'=' else 0
        q3 = _STD_VALUE[p[i + 3]] if p[i + 3] != c'=' else 0
        v = (<unsigned int>q0 << 18) | (<unsigned int>q1 << 12) | (<unsigned int>q2 << 6) | <unsigned int>q3
        out[j] = (v >> 16) & 255
        if j + 1 < size:
            out[j + 1] = (v >> 8) & 255
        if j + 2 < size:
            out[j + 2] = v & 255
        j += 3
    return result


# --- hashes and key_id ---------------------------------------------------------------------------


cdef str _hash_label(object value):
    encoded = PyUnicode_AsUTF8String(value) if type(value) is str else value.encode("utf-8")
    return _b64_str(_sha256(encoded).digest(), _URL_ALPHABET, False)


def hash_label(value):
    """H(x): unpadded base64url of SHA-256 over the UTF-8 bytes of *value* (43 chars)."""
    return _hash_label(value)


def derive_key_id(
    provider_name,
    cluster_id,
    instance_id,
    namespace,
    mount_id,
    lineage_id,
    version,
    created_unix,
):
    """The key_id of one Transit key version; *namespace* ``""`` means none is configured."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    if created_unix < 0:
        raise ValueError("Transit key version creation time must not be negative")
    parts = [KEY_ID_DOMAIN, provider_name, cluster_id, instance_id]
    if namespace:
        parts.append(namespace)
    parts += [mount_id, lineage_id, str(version), str(created_unix)]
    message = bytearray()
    for part in parts:
        encoded = part.encode("utf-8")
        if b"\0" in encoded:
            raise ValueError("identity labels must not contain NUL")
        message += encoded
        message += b"\0"
    return _KEY_ID_PREFIX + _b64_str(_sha256(message).digest(), _URL_ALPHABET, False)


cdef bytes _parse_key_id_generic(object key_id):
    # The spec's own steps, for a str that is not pure ASCII or an object that is not a str.
    if not key_id.startswith(_KEY_ID_PREFIX):
        raise MalformedKeyId(_MSG_PREFIX)
    suffix = key_id[len(_KEY_ID_PREFIX) :]
    if not _HASH_RE.fullmatch(suffix):
        raise MalformedKeyId(_MSG_SUFFIX)
    digest = base64.urlsafe_b64decode(suffix + "=")
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii") != suffix:
        raise MalformedKeyId(_MSG_NONCANONICAL)
    return digest


def parse_key_id(key_id):
    """The 32 digest bytes of a well-formed key_id; MalformedKeyId for anything else."""
    cdef Py_ssize_t length = len(key_id)
    cdef const unsigned char* p
    cdef Py_ssize_t i
    cdef unsigned int v
    if length != _KEY_ID_LENGTH:
        raise MalformedKeyId(f"key_id must be {KEY_ID_LENGTH} characters, got {length}")
    if type(key_id) is not str or not PyUnicode_IS_ASCII(key_id):
        return _parse_key_id_generic(key_id)
    p = <const unsigned char*>PyUnicode_DATA(key_id)
    if memcmp(p, b"obk2.", 5) != 0:
        raise MalformedKeyId(_MSG_PREFIX)
    p += 5
    for i in range(43):
        if _URL_VALUE[p[i]] < 0:
            raise MalformedKeyId(_MSG_SUFFIX)
    # 43 characters carry 258 bits: ten full quads (30 bytes), then 3 characters whose last two
    # bits must be zero, otherwise two spellings would name the same digest.
    v = (<unsigned int>_URL_VALUE[p[40]] << 12) | (<unsigned int>_URL_VALUE[p[41]] << 6) | _URL_VALUE[p[42]]
    if v & 3:
        raise MalformedKeyId(_MSG_NONCANONICAL)
    cdef bytes digest = PyBytes_FromStringAndSize(NULL, 32)
    cdef unsigned char* out = <unsigned char*>PyBytes_AS_STRING(digest)
    out[30] = (v >> 10) & 255
    out[31] = (v >> 2) & 255
    for i in range(10):
        v = (
            (<unsigned int>_URL_VALUE[p[4 * i]] << 18)
            | (<unsigned int>_URL_VALUE[p[4 * i + 1]] << 12)
            | (<unsigned int>_URL_VALUE[p[4 * i + 2]] << 6)
            | <unsigned int>_URL_VALUE[p[4 * i + 3]]
        )
        out[3 * i] = (v >> 16) & 255
        out[3 * i + 1] = (v >> 8) & 255
        out[3 * i + 2] = v & 255
    return digest


# --- annotations ---------------------------------------------------------------------------------


def build_annotations(key_id, namespace, mount_id, lineage_id, version, plugin_version):
    """The EncryptResponse annotations for one key version (values are UTF-8 bytes)."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    annotations = {
        _ANN_PROVIDER: _PROVIDER,
        _ANN_KEY_ID_HASH: _hash_label(key_id),
        _ANN_KEY_VERSION: str(version),
        _ANN_MOUNT_HASH: _hash_label(mount_id),
        _ANN_KEY_HASH: _hash_label(lineage_id),
    }
    if namespace:
        annotations[_ANN_NAMESPACE_HASH] = _hash_label(namespace)
    annotations[_ANN_PLUGIN_VERSION] = plugin_version
    annotations[_ANN_AAD_VERSION] = _AAD_VERSION
    return {key: value.encode("utf-8") for key, value in annotations.items()}


cdef inline object _get(object annotations, str key):
    # Mapping.get, generically: a dict, a mappingproxy or a protobuf map container.
    if type(annotations) is dict:
        return (<dict>annotations).get(key)
    return annotations.get(key)


cdef bytes _raw(object annotations, str key):
    """The value bytes of annotation *key* (the spec's ``bytes(value)``), or InvalidAnnotations."""
    value = _get(annotations, key)
    if value is None:
        raise InvalidAnnotations(f"annotation {key} is missing")
    if type(value) is bytes:
        return <bytes>value
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise InvalidAnnotations(f"annotation {key} is not a byte string")
    return bytes(value)


cdef str _text(bytes raw, str key):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidAnnotations(f"annotation {key} is not valid UTF-8") from None


# Slots of the values _parse_annotations reads, so match_annotations need not read them again
# (on a protobuf map container every read is a lookup plus a new bytes object).
cdef dict _SLOTS = {
    ANN_PROVIDER: 0,
    ANN_AAD_VERSION: 1,
    ANN_KEY_ID_HASH: 2,
    ANN_MOUNT_HASH: 3,
    ANN_KEY_HASH: 4,
    ANN_NAMESPACE_HASH: 5,
    ANN_PLUGIN_VERSION: 6,
    ANN_KEY_VERSION: 7,
}


cdef long long _parse_annotations(object annotations, list seen) except -1:
    # Same checks in the same order as the spec. Each value is tested on its bytes first; only
    # when that fails is it decoded, so a value that is not UTF-8 gets the spec's message.
    # *seen*, when given, receives every value read, by slot.
    cdef bytes raw
    cdef const unsigned char* p
    cdef Py_ssize_t n, i
    cdef long long version
    cdef bint has_namespace = _ANN_NAMESPACE_HASH in annotations
    cdef Py_ssize_t expected_count = 8 if has_namespace else 7
    if type(annotations) is dict:
        for key in <dict>annotations:
            if key not in _KNOWN_ANNOTATIONS:
                raise InvalidAnnotations("annotations contain an unknown key")
    else:
        for key in annotations:
            if key not in _KNOWN_ANNOTATIONS:
                raise InvalidAnnotations("annotations contain an unknown key")
    if len(annotations) != expected_count:
        raise InvalidAnnotations("annotations are incomplete")

    raw = _raw(annotations, _ANN_PROVIDER)
    if raw != _PROVIDER_BYTES:
        _text(raw, _ANN_PROVIDER)
        raise InvalidAnnotations(f"annotation {ANN_PROVIDER} names another provider")
    if seen is not None:
        seen[0] = raw
    raw = _raw(annotations, _ANN_AAD_VERSION)
    if raw != _AAD_VERSION_BYTES:
        _text(raw, _ANN_AAD_VERSION)
        raise InvalidAnnotations(f"annotation {ANN_AAD_VERSION} is not a supported AAD version")
    if seen is not None:
        seen[1] = raw
    for i in range(4 if has_namespace else 3):
        key = <str>_HASH_ANNOTATIONS[i]
        raw = _raw(annotations, key)
        if PyBytes_GET_SIZE(raw) != 43 or not _all_in(
            <const unsigned char*>PyBytes_AS_STRING(raw), 43, _URL_CHAR
        ):
            _text(raw, key)
            raise InvalidAnnotations(f"annotation {key} is not a 43-character hash")
        if seen is not None:
            seen[2 + i] = raw

    raw = _raw(annotations, _ANN_PLUGIN_VERSION)
    n = PyBytes_GET_SIZE(raw)
    if not (
        0 < n <= _MAX_PLUGIN_VERSION_LENGTH
        and _all_in(<const unsigned char*>PyBytes_AS_STRING(raw), n, _PRINTABLE)
    ):
        # Not plain printable ASCII: judge it exactly as the spec does, on the decoded text.
        text = _text(raw, _ANN_PLUGIN_VERSION)
        if not 0 < len(text) <= _MAX_PLUGIN_VERSION_LENGTH or not text.isprintable():
            raise InvalidAnnotations(
                f"annotation {ANN_PLUGIN_VERSION} is empty, too long or unprintable"
            )
    if seen is not None:
        seen[6] = raw

    raw = _raw(annotations, _ANN_KEY_VERSION)
    n = PyBytes_GET_SIZE(raw)
    p = <const unsigned char*>PyBytes_AS_STRING(raw)
    version = -1
    if 0 < n <= 10 and c'1' <= p[0] <= c'9':
        version = 0
        for i in range(n):
            if not c'0' <= p[i] <= c'9':
                version = -1
                break
            version = version * 10 + (p[i] - c'0')
    if version < 0:
        _text(raw, _ANN_KEY_VERSION)
        raise InvalidAnnotations(
            f"annotation {ANN_KEY_VERSION} is not a canonical positive decimal"
        )
    if seen is not None:
        seen[7] = raw
    return version


def parse_annotations(annotations):
    """Check the shape of request annotations; return the Transit key version they name."""
    return _parse_annotations(annotations, None)


def match_annotations(annotations, expected):
    """Refuse request *annotations* unless they are exactly those of the *expected* version.

    Every expected annotation must be present and byte-equal, except ``plugin-version``, which
    must be present and well-formed but is not compared (any release may have written it).
    """
    cdef list seen = [None] * 8
    _parse_annotations(annotations, seen)
    if len(annotations) != len(expected):
        raise InvalidAnnotations("annotations do not match the key version")
    if type(expected) is dict:
        for key, value in (<dict>expected).items():
            _compare(annotations, seen, key, value)
    else:
        for key, value in expected.items():
            _compare(annotations, seen, key, value)


cdef int _compare(object annotations, list seen, object key, object value) except -1:
    cdef bytes given
    cdef object found = None
    if key == _ANN_PLUGIN_VERSION:
        return 0
    if type(key) is str:
        slot = _SLOTS.get(key)
        if slot is not None:
            found = seen[<Py_ssize_t>slot]
    if found is None:
        # not read by the parse (an unexpected key, or a namespace hash the request lacks)
        found = _get(annotations, key) if type(key) is str else annotations.get(key)
        if found is None:
            raise InvalidAnnotations(f"annotation {key} is missing")
    given = <bytes>found if type(found) is bytes else bytes(found)
    if given != value:
        raise InvalidAnnotations(f"annotation {key} does not match the key version")
    return 0


# --- AAD -----------------------------------------------------------------------------------------


cdef str _go_json_string(object value):
    if _ascii_str_in(value, _GO_PLAIN):
        return '"' + <str>value + '"'
    out = ['"']
    for char in value:
        escaped = _GO_JSON_ESCAPES.get(char)
        if escaped is not None:
            out.append(escaped)
        elif char < " ":
            out.append(f"\\u{ord(char):04x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def canonical_aad(
    provider_name,
    cluster_id,
    instance_id,
    namespace,
    mount_id,
    lineage_id,
    key_id,
    version,
):
    """The v1 AAD: compact JSON with a fixed key order, byte-equal to the Go provider's."""
    if version < 1:
        raise ValueError("Transit key version must be at least 1")
    fields = [
        ("aad_version", _AAD_VERSION),
        ("purpose", AAD_PURPOSE),
        ("provider", _PROVIDER),
        ("provider_name", provider_name),
        ("cluster_id_hash", _hash_label(cluster_id)),
        ("openbao_instance_hash", _hash_label(instance_id)),
    ]
    if namespace:
        fields.append(("openbao_namespace_hash", _hash_label(namespace)))
    fields += [
        ("transit_mount_hash", _hash_label(mount_id)),
        ("transit_key_hash", _hash_label(lineage_id)),
        ("key_id_hash", _hash_label(key_id)),
        ("key_version", str(version)),
    ]
    body = ",".join([f'"{name}":{_go_json_string(value)}' for name, value in fields])
    return ("{" + body + "}").encode("utf-8")


def transit_aad(canonical):
    """The AAD as Transit's ``associated_data`` wants it: standard padded base64."""
    if type(canonical) is bytes:
        return _b64_str(<bytes>canonical, _STD_ALPHABET, True)
    return base64.b64encode(canonical).decode("ascii")


# --- ciphertext ----------------------------------------------------------------------------------


cdef long long _ciphertext_version(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """N of ``vault:vN:<base64>``; -1 empty, -2 too long, -3 any other malformation.

    The spec's pattern, unrolled: ``vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})``, whole
    input, and the base64 part (padding included) a multiple of 4 long.
    """
    cdef Py_ssize_t i, start, alpha
    cdef long long version
    if n == 0:
        return -1
    if n > _MAX_CIPHERTEXT_LENGTH:
        return -2
    if n < 10 or memcmp(p, b"vault:v", 7) != 0 or not c'1' <= p[7] <= c'9':
        return -3
    version = 0
    i = 7
    while i < n and c'0' <= p[i] <= c'9':
        if i - 7 == 10:
            return -3
        version = version * 10 + (p[i] - c'0')
        i += 1
    if i >= n or p[i] != c':':
        return -3
    start = i + 1
    i = start
    while i < n and _STD_VALUE[p[i]] >= 0:
        i += 1
    alpha = i - start
    if alpha == 0:
        return -3
    while i < n and p[i] == c'=' and i - start - alpha < 2:
        i += 1
    if i != n or (n - start) % 4:
        return -3
    return version


cdef long long _parse_ciphertext_version(object ciphertext) except -1:
    cdef long long version
    if type(ciphertext) is not bytes:
        # bytearray, memoryview, ...: the spec's own steps.
        if not ciphertext:
            raise InvalidCiphertext(_MSG_CT_EMPTY)
        if len(ciphertext) > _MAX_CIPHERTEXT_LENGTH:
            raise InvalidCiphertext(_MSG_CT_LONG)
        match = _CIPHERTEXT_RE.fullmatch(ciphertext)
        if match is None or len(match.group(2)) % 4:
            raise InvalidCiphertext(_MSG_CT_SHAPE)
        return int(match.group(1))
    version = _ciphertext_version(
        <const unsigned char*>PyBytes_AS_STRING(ciphertext), PyBytes_GET_SIZE(ciphertext)
    )
    if version == -1:
        raise InvalidCiphertext(_MSG_CT_EMPTY)
    if version == -2:
        raise InvalidCiphertext(_MSG_CT_LONG)
    if version == -3:
        raise InvalidCiphertext(_MSG_CT_SHAPE)
    return version


cdef inline bint _version_equals(long long parsed, object version) except -1:
    cdef int overflow = 0
    cdef long long value
    if type(version) is int:
        value = PyLong_AsLongLongAndOverflow(version, &overflow)
        return not overflow and value == parsed
    return not (parsed != version)


def parse_ciphertext_version(ciphertext):
    """The N of a well-formed ``vault:vN:<base64>`` ciphertext; InvalidCiphertext otherwise."""
    return _parse_ciphertext_version(ciphertext)


def check_ciphertext_version(ciphertext, version):
    """Refuse a ciphertext that is malformed or was not written by key *version*."""
    if not _version_equals(_parse_ciphertext_version(ciphertext), version):
        raise InvalidCiphertext(_MSG_CT_VERSION)


# --- Transit request bodies ----------------------------------------------------------------------

# The bodies have a fixed shape; with every variable part already in JSON's plain charset they
# are a concatenation, byte-equal to orjson's compact output for the same dict.
cdef bytes _ENC_HEAD = b'{"plaintext":"'
cdef bytes _ENC_MID1 = b'","key_version":'
cdef bytes _ENC_MID2 = b',"associated_data":"'
cdef bytes _DEC_HEAD = b'{"ciphertext":"'
cdef bytes _DEC_MID = b'","associated_data":"'
cdef bytes _TAIL = b'"}'


cdef inline unsigned char* _put(unsigned char* out, bytes piece) noexcept:
    cdef Py_ssize_t n = PyBytes_GET_SIZE(piece)
    memcpy(out, PyBytes_AS_STRING(piece), n)
    return out + n


cdef Py_ssize_t _decimal(long long value, char* buf) noexcept nogil:
    """Write *value* in decimal at the end of the 24-byte *buf*; return where it starts."""
    cdef unsigned long long magnitude = (
        <unsigned long long>value if value >= 0 else <unsigned long long>(-(value + 1)) + 1
    )
    cdef Py_ssize_t i = 24
    while True:
        i -= 1
        buf[i] = <char>(c'0' + magnitude % 10)
        magnitude //= 10
        if magnitude == 0:
            break
    if value < 0:
        i -= 1
        buf[i] = c'-'
    return i


def encrypt_request_body(plaintext, key_version, associated_data):
    """JSON body for ``POST transit/encrypt/<key>`` pinned to *key_version*."""
    cdef int overflow = 0
    cdef long long version
    cdef char digits[24]
    cdef Py_ssize_t start, n_plain, n_b64, n_ad
    cdef unsigned char* out
    if (
        type(plaintext) is bytes
        and type(key_version) is int
        and _json_plain_str(associated_data)
    ):
        version = PyLong_AsLongLongAndOverflow(key_version, &overflow)
        if not overflow:
            start = _decimal(version, digits)
            n_plain = PyBytes_GET_SIZE(plaintext)
            n_b64 = _b64_length(n_plain, True)
            n_ad = PyUnicode_GET_LENGTH(associated_data)
            body = PyBytes_FromStringAndSize(
                NULL,
                PyBytes_GET_SIZE(_ENC_HEAD) + n_b64 + PyBytes_GET_SIZE(_ENC_MID1) + (24 - start)
                + PyBytes_GET_SIZE(_ENC_MID2) + n_ad + PyBytes_GET_SIZE(_TAIL),
            )
            out = <unsigned char*>PyBytes_AS_STRING(body)
            out = _put(out, _ENC_HEAD)
            _b64_encode(<const unsigned char*>PyBytes_AS_STRING(plaintext), n_plain, out, _STD_ALPHABET, True)
            out = _put(out + n_b64, _ENC_MID1)
            memcpy(out, digits + start, 24 - start)
            out = _put(out + 24 - start, _ENC_MID2)
            memcpy(out, PyUnicode_DATA(associated_data), n_ad)
            _put(out + n_ad, _TAIL)
            return body
    return _dumps(
        {
            "plaintext": base64.b64encode(plaintext).decode("ascii"),
            "key_version": key_version,
            "associated_data": associated_data,
        }
    )


def decrypt_request_body(ciphertext, associated_data):
    """JSON body for ``POST transit/decrypt/<key>``; *ciphertext* must already be checked."""
    cdef Py_ssize_t n_ct, n_ad
    cdef unsigned char* out
    if (
        type(ciphertext) is bytes
        and _json_plain(<const unsigned char*>PyBytes_AS_STRING(ciphertext), PyBytes_GET_SIZE(ciphertext))
        and _json_plain_str(associated_data)
    ):
        n_ct = PyBytes_GET_SIZE(ciphertext)
        n_ad = PyUnicode_GET_LENGTH(associated_data)
        body = PyBytes_FromStringAndSize(
            NULL,
            PyBytes_GET_SIZE(_DEC_HEAD) + n_ct + PyBytes_GET_SIZE(_DEC_MID) + n_ad + PyBytes_GET_SIZE(_TAIL),
        )
        out = <unsigned char*>PyBytes_AS_STRING(body)
        out = _put(out, _DEC_HEAD)
        memcpy(out, PyBytes_AS_STRING(ciphertext), n_ct)
        out = _put(out + n_ct, _DEC_MID)
        memcpy(out, PyUnicode_DATA(associated_data), n_ad)
        _put(out + n_ad, _TAIL)
        return body
    return _dumps({"ciphertext": ciphertext.decode("ascii"), "associated_data": associated_data})


# --- Transit responses ---------------------------------------------------------------------------


cdef dict _response_data(object body, str not_json, str no_data):
    try:
        document = _loads(body)
    except _JSONDecodeError:
        raise OpenBaoBadResponse(not_json) from None
    data = (<dict>document).get("data") if isinstance(document, dict) else None
    if not isinstance(data, dict):
        raise OpenBaoBadResponse(no_data)
    return <dict>data


def parse_encrypt_response(body):
    """The ciphertext bytes and key version from a Transit encrypt response."""
    cdef dict data = _response_data(
        body,
        "Transit encrypt response is not JSON",
        "Transit encrypt response has no data object",
    )
    ciphertext = data.get("ciphertext")
    version = data.get("key_version")
    if not isinstance(ciphertext, str) or not ciphertext.isascii():
        raise OpenBaoBadResponse("Transit encrypt response has no ciphertext string")
    if type(version) is not int or version < 1:
        raise OpenBaoBadResponse("Transit encrypt response has no positive key_version")
    cdef bytes encoded = PyUnicode_AsASCIIString(ciphertext)
    cdef long long parsed = _ciphertext_version(
        <const unsigned char*>PyBytes_AS_STRING(encoded), PyBytes_GET_SIZE(encoded)
    )
    if parsed < 0 or not _version_equals(parsed, version):
        # "from None" as in the spec, where this replaces a caught InvalidCiphertext.
        raise OpenBaoBadResponse(
            "Transit encrypt response ciphertext is malformed or names another version"
        ) from None
    return encoded, version


def parse_decrypt_response(body):
    """The plaintext bytes from a Transit decrypt response."""
    cdef dict data = _response_data(
        body,
        "Transit decrypt response is not JSON",
        "Transit decrypt response has no data object",
    )
    plaintext = data.get("plaintext")
    if (
        not isinstance(plaintext, str)
        or PyUnicode_GET_LENGTH(plaintext) == 0
        or not PyUnicode_IS_ASCII(plaintext)
    ):
        raise OpenBaoBadResponse("Transit decrypt response has no plaintext string")
    decoded = _b64_decode_simple(
        <const unsigned char*>PyUnicode_DATA(plaintext), PyUnicode_GET_LENGTH(plaintext)
    )
    if decoded is not None:
        return decoded
    try:
        # binascii takes an ASCII str as it takes its bytes; no need to encode first.
        return _a2b_base64(plaintext, strict_mode=True)
    except _BinasciiError:
        raise OpenBaoBadResponse("Transit decrypt response plaintext is not base64") from None


__all__ = [
    "AAD_PURPOSE",
    "AAD_VERSION",
    "ANN_AAD_VERSION",
    "ANN_KEY_HASH",
    "ANN_KEY_ID_HASH",
    "ANN_KEY_VERSION",
    "ANN_MOUNT_HASH",
    "ANN_NAMESPACE_HASH",
    "ANN_PLUGIN_VERSION",
    "ANN_PROVIDER",
    "KEY_ID_DOMAIN",
    "KEY_ID_LENGTH",
    "KEY_ID_PREFIX",
    "MAX_CIPHERTEXT_LENGTH",
    "MAX_PLUGIN_VERSION_LENGTH",
    "PROVIDER",
    "build_annotations",
    "canonical_aad",
    "check_ciphertext_version",
    "decrypt_request_body",
    "derive_key_id",
    "encrypt_request_body",
    "hash_label",
    "match_annotations",
    "parse_annotations",
    "parse_ciphertext_version",
    "parse_decrypt_response",
    "parse_encrypt_response",
    "parse_key_id",
    "transit_aad",
]
