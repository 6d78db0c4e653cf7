# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False, cdivision=True
"""The per-request half of ``bao_kms._codec_py`` compiled; the rest is imported from it.

Compiled: what every Encrypt or Decrypt runs (key_id parse, annotation match, ciphertext version
check, Transit request bodies and response parsers, single and batch). Imported and re-exported
as the very same objects, as aiohttp's ``_http_parser.pyx`` imports from ``http_parser.py``: the
constants and what runs once per key version (``hash_label``, ``derive_key_id``,
``build_annotations``, ``canonical_aad``, ``transit_aad``).

Each compiled function proves the common, valid input on its bytes (``const unsigned char*``
loops instead of regular expressions, base64 written straight into the result) and returns.
Anything else (an unusual type or charset, any refusal) goes to the spec function itself, which
returns or raises exactly what the spec says: messages and error classes live there only. So a
fast path must never accept what the spec refuses; ``tests/codec/`` checks that.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.list cimport PyList_GET_SIZE
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.long cimport PyLong_AsLongLongAndOverflow
from cpython.unicode cimport PyUnicode_AsASCIIString, PyUnicode_GET_LENGTH
from libc.string cimport memcmp

from bao_kms._fast._bytes cimport (
    all_in, b64_decoded, b64_encode, decimal, json_plain, put, put_bytes
)

import orjson

from bao_kms import _codec_py as _spec
from bao_kms._codec_py import (  # re-exported as they are: cold code is written once
    AAD_PURPOSE, AAD_VERSION, ANN_AAD_VERSION, ANN_KEY_HASH, ANN_KEY_ID_HASH, ANN_KEY_VERSION,
    ANN_MOUNT_HASH, ANN_NAMESPACE_HASH, ANN_PLUGIN_VERSION, ANN_PROVIDER, KEY_ID_DOMAIN,
    KEY_ID_LENGTH, KEY_ID_PREFIX, MAX_CIPHERTEXT_LENGTH, MAX_PLUGIN_VERSION_LENGTH, PROVIDER,
    __all__, build_annotations, canonical_aad, derive_key_id, hash_label, transit_aad,
)


cdef extern from "Python.h":
    # Not declared by Cython's cpython.unicode; both are cheap macros on a ready str.
    bint PyUnicode_IS_ASCII(object o)
    void* PyUnicode_DATA(object o)


# C-level copies: module globals are dictionary look-ups, these are not.
cdef object _loads = orjson.loads
cdef object _JSONDecodeError = orjson.JSONDecodeError
cdef bytes _KEY_ID_PREFIX = KEY_ID_PREFIX.encode("ascii")
cdef Py_ssize_t _KEY_ID_LENGTH = KEY_ID_LENGTH
cdef Py_ssize_t _MAX_PLUGIN_VERSION_LENGTH = MAX_PLUGIN_VERSION_LENGTH
cdef Py_ssize_t _MAX_CIPHERTEXT_LENGTH = MAX_CIPHERTEXT_LENGTH
cdef str _ANN_NAMESPACE_HASH = ANN_NAMESPACE_HASH
cdef str _ANN_PLUGIN_VERSION = ANN_PLUGIN_VERSION
cdef bytes _PROVIDER_BYTES = PROVIDER.encode("ascii")
cdef bytes _AAD_VERSION_BYTES = AAD_VERSION.encode("ascii")
cdef frozenset _KNOWN_ANNOTATIONS = _spec._KNOWN_ANNOTATIONS
# The annotations in the order the spec reads them; a value's slot is its place here.
cdef tuple _READ_ORDER = (
    ANN_PROVIDER, ANN_AAD_VERSION, *_spec._HASH_ANNOTATIONS, ANN_PLUGIN_VERSION, ANN_KEY_VERSION
)
cdef dict _SLOTS = {key: slot for slot, key in enumerate(_READ_ORDER)}

# --- byte tables (the scans and base64 themselves are inline C in _bytes.pxd) --------------------

cdef const char* _STD_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
cdef const char* _URL_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
cdef signed char _STD_VALUE[256]   # 6-bit value of a standard base64 character, else -1
cdef signed char _URL_VALUE[256]   # same for base64url
cdef unsigned char _URL_CHAR[256]    # a base64url character
cdef unsigned char _JSON_PLAIN[256]  # printable ASCII that any JSON encoder leaves unescaped
cdef unsigned char _PRINTABLE[256]   # printable ASCII, 0x20-0x7E: str.isprintable() holds
cdef unsigned char _DIGIT[256]       # 0-9


cdef void _init_tables() noexcept:
    cdef int i
    for i in range(256):
        _STD_VALUE[i] = -1
        _URL_VALUE[i] = -1
        _JSON_PLAIN[i] = 0x20 <= i <= 0x7E and i != c'"' and i != c'\\'
        _PRINTABLE[i] = 0x20 <= i <= 0x7E
        _DIGIT[i] = c'0' <= i <= c'9'
    for i in range(64):
        _STD_VALUE[<unsigned char>_STD_ALPHABET[i]] = i
        _URL_VALUE[<unsigned char>_URL_ALPHABET[i]] = i
    for i in range(256):
        _URL_CHAR[i] = _URL_VALUE[i] >= 0


_init_tables()


cdef inline bint _json_plain_str(object value):
    """True when *value* is an exact, pure-ASCII str that JSON carries unescaped."""
    return type(value) is str and PyUnicode_IS_ASCII(value) and json_plain(
        <const unsigned char*>PyUnicode_DATA(value), PyUnicode_GET_LENGTH(value), _JSON_PLAIN
    )


cdef inline bint _int_is(object value, long long expected) except -1:
    """True when the exact int *value* equals *expected* (one that overflows does not)."""
    cdef int overflow = 0
    cdef long long number = PyLong_AsLongLongAndOverflow(value, &overflow)
    return not overflow and number == expected


# --- key_id --------------------------------------------------------------------------------------


def parse_key_id(key_id):
    """The 32 digest bytes of a well-formed key_id; MalformedKeyId for anything else."""
    cdef const unsigned char* p
    cdef bytes digest
    if (
        type(key_id) is str
        and PyUnicode_IS_ASCII(key_id)
        and PyUnicode_GET_LENGTH(key_id) == _KEY_ID_LENGTH
    ):
        p = <const unsigned char*>PyUnicode_DATA(key_id)
        if memcmp(p, PyBytes_AS_STRING(_KEY_ID_PREFIX), PyBytes_GET_SIZE(_KEY_ID_PREFIX)) == 0:
            # a canonical 43-character suffix: 258 bits whose last two are zero, 32 bytes
            digest = b64_decoded(
                p + PyBytes_GET_SIZE(_KEY_ID_PREFIX),
                _KEY_ID_LENGTH - PyBytes_GET_SIZE(_KEY_ID_PREFIX),
                _URL_VALUE,
            )
            if digest is not None:
                return digest
    return _spec.parse_key_id(key_id)


# --- annotations ---------------------------------------------------------------------------------


cdef bytes _read(object annotations, list seen, Py_ssize_t slot):
    """The value of the annotation in *slot*, kept in *seen*; None unless it is exact bytes.

    A dict, a mappingproxy or a protobuf map container (where every read is a lookup plus a new
    bytes object, hence *seen*: match_annotations compares what the parse read).
    """
    key = <str>_READ_ORDER[slot]
    value = (<dict>annotations).get(key) if type(annotations) is dict else annotations.get(key)
    if type(value) is not bytes:
        return None
    seen[slot] = value
    return <bytes>value


cdef inline bint _bytes_in(bytes raw, Py_ssize_t low, Py_ssize_t high, const unsigned char* table):
    """*raw* is not None, *low* to *high* bytes long, and made only of *table* bytes."""
    if raw is None or not low <= PyBytes_GET_SIZE(raw) <= high:
        return False
    return all_in(<const unsigned char*>PyBytes_AS_STRING(raw), PyBytes_GET_SIZE(raw), table)


cdef long long _fast_parse(object annotations, list seen) except -2:
    """The version that well-formed, plain-ASCII *annotations* name; -1 when the spec must judge.

    The spec's reads in the spec's order, so an odd mapping fails here as it fails there; each
    value must be exact bytes and pass the spec's check on its bytes alone.
    """
    cdef bytes raw
    cdef Py_ssize_t i
    cdef long long version = 0
    cdef bint has_namespace = _ANN_NAMESPACE_HASH in annotations
    for key in annotations:
        if key not in _KNOWN_ANNOTATIONS:
            return -1
    if len(annotations) != (8 if has_namespace else 7):
        return -1
    raw = _read(annotations, seen, 0)
    if raw is None or raw != _PROVIDER_BYTES:
        return -1
    raw = _read(annotations, seen, 1)
    if raw is None or raw != _AAD_VERSION_BYTES:
        return -1
    for i in range(2, 6 if has_namespace else 5):  # the hashes, the namespace's last
        if not _bytes_in(_read(annotations, seen, i), 43, 43, _URL_CHAR):
            return -1
    if not _bytes_in(_read(annotations, seen, 6), 1, _MAX_PLUGIN_VERSION_LENGTH, _PRINTABLE):
        return -1
    raw = _read(annotations, seen, 7)
    if not _bytes_in(raw, 1, 10, _DIGIT) or PyBytes_AS_STRING(raw)[0] == c'0':
        return -1
    for i in range(PyBytes_GET_SIZE(raw)):
        version = version * 10 + (PyBytes_AS_STRING(raw)[i] - c'0')
    return version


cdef bint _fast_match(object annotations, object expected, list seen) except -1:
    """True when the parsed *annotations* (their values in *seen*) are byte-equal to *expected*;
    False when the spec must judge."""
    if len(annotations) != len(expected):
        return False
    items = (<dict>expected).items() if type(expected) is dict else expected.items()
    for key, value in items:
        if type(key) is not str:
            return False
        if key == _ANN_PLUGIN_VERSION:
            continue
        slot = _SLOTS.get(key)
        given = None if slot is None else seen[<Py_ssize_t>slot]
        if given is None or type(value) is not bytes or <bytes>given != <bytes>value:
            return False
    return True


def parse_annotations(annotations):
    """Check the shape of request annotations; return the Transit key version they name."""
    cdef long long version = _fast_parse(annotations, [None] * 8)
    return _spec.parse_annotations(annotations) if version < 0 else version


def match_annotations(annotations, expected):
    """Refuse request *annotations* unless they are exactly those of the *expected* version.

    Every expected annotation must be present and byte-equal, except ``plugin-version``, which
    must be present and well-formed but is not compared (any release may have written it).
    """
    cdef list seen = [None] * 8
    if _fast_parse(annotations, seen) < 0 or not _fast_match(annotations, expected, seen):
        _spec.match_annotations(annotations, expected)


# --- ciphertext ----------------------------------------------------------------------------------


cdef long long _ciphertext_version(const unsigned char* p, Py_ssize_t n) noexcept nogil:
    """N of a well-formed ``vault:vN:<base64>``, else -1.

    The spec's checks unrolled: at most ``MAX_CIPHERTEXT_LENGTH`` bytes, the whole input matching
    ``vault:v([1-9][0-9]{0,9}):([A-Za-z0-9+/]+={0,2})``, the base64 part a multiple of 4 long.
    """
    cdef Py_ssize_t i = 7
    cdef Py_ssize_t start, alpha
    cdef long long version = 0
    if n < 10 or n > _MAX_CIPHERTEXT_LENGTH or memcmp(p, b"vault:v", 7) != 0 or p[7] == c'0':
        return -1
    while i < n and _DIGIT[p[i]]:
        if i - 7 == 10:
            return -1
        version = version * 10 + (p[i] - c'0')
        i += 1
    if i == 7 or i >= n or p[i] != c':':
        return -1
    start = i + 1
    i = start
    while i < n and _STD_VALUE[p[i]] >= 0:
        i += 1
    alpha = i - start
    while i < n and p[i] == c'=' and i - start - alpha < 2:
        i += 1
    if alpha == 0 or i != n or (n - start) % 4:
        return -1
    return version


cdef inline long long _bytes_version(object ciphertext) noexcept:
    """``_ciphertext_version`` of exact bytes; -1 for any other type."""
    if type(ciphertext) is not bytes:
        return -1
    return _ciphertext_version(
        <const unsigned char*>PyBytes_AS_STRING(ciphertext), PyBytes_GET_SIZE(ciphertext)
    )


def parse_ciphertext_version(ciphertext):
    """The N of a well-formed ``vault:vN:<base64>`` ciphertext; InvalidCiphertext otherwise."""
    cdef long long version = _bytes_version(ciphertext)
    return _spec.parse_ciphertext_version(ciphertext) if version < 0 else version


def check_ciphertext_version(ciphertext, version):
    """Refuse a ciphertext that is malformed or was not written by key *version*."""
    cdef long long parsed = _bytes_version(ciphertext)
    if parsed < 0 or type(version) is not int or not _int_is(version, parsed):
        _spec.check_ciphertext_version(ciphertext, version)


# --- Transit request bodies ----------------------------------------------------------------------

# The bodies have a fixed shape; with every variable part already in JSON's plain charset they
# are a concatenation, byte-equal to orjson's compact output for the same dict.
cdef bytes _ENC_HEAD = b'{"plaintext":"'
cdef bytes _ENC_MID1 = b'","key_version":'
cdef bytes _ENC_MID2 = b',"associated_data":"'
cdef bytes _DEC_HEAD = b'{"ciphertext":"'
cdef bytes _DEC_MID = b'","associated_data":"'
cdef bytes _TAIL = b'"}'
cdef bytes _BATCH_HEAD = b'{"batch_input":['
cdef object _UNSEEN = object()  # no AAD is known to be plain yet


def encrypt_request_body(plaintext, key_version, associated_data):
    """JSON body for ``POST transit/encrypt/<key>`` pinned to *key_version*."""
    cdef int overflow = 0
    cdef long long version
    cdef char digits[24]
    cdef Py_ssize_t start, n_plain, n_b64, n_ad
    cdef unsigned char* out
    if type(plaintext) is bytes and type(key_version) is int and _json_plain_str(associated_data):
        version = PyLong_AsLongLongAndOverflow(key_version, &overflow)
        if not overflow:
            start = decimal(version, digits)
            n_plain = PyBytes_GET_SIZE(plaintext)
            n_b64 = (n_plain + 2) // 3 * 4
            n_ad = PyUnicode_GET_LENGTH(associated_data)
            body = PyBytes_FromStringAndSize(
                NULL,
                PyBytes_GET_SIZE(_ENC_HEAD) + n_b64 + PyBytes_GET_SIZE(_ENC_MID1) + (24 - start)
                + PyBytes_GET_SIZE(_ENC_MID2) + n_ad + PyBytes_GET_SIZE(_TAIL),
            )
            out = put_bytes(<unsigned char*>PyBytes_AS_STRING(body), _ENC_HEAD)
            b64_encode(
                <const unsigned char*>PyBytes_AS_STRING(plaintext), n_plain, out, _STD_ALPHABET
            )
            out = put_bytes(out + n_b64, _ENC_MID1)
            out = put_bytes(put(out, digits + start, 24 - start), _ENC_MID2)
            put_bytes(put(out, PyUnicode_DATA(associated_data), n_ad), _TAIL)
            return body
    return _spec.encrypt_request_body(plaintext, key_version, associated_data)


cdef Py_ssize_t _decrypt_item_size(object ciphertext, object associated_data, object known):
    """Bytes of ``{"ciphertext":"..","associated_data":".."}``, -1 unless both are exact types in
    JSON's plain charset. *known*: an AAD found plain already (a batch shares one ~600-byte AAD)."""
    if type(ciphertext) is not bytes or not json_plain(
        <const unsigned char*>PyBytes_AS_STRING(ciphertext), len(<bytes>ciphertext), _JSON_PLAIN
    ) or (associated_data is not known and not _json_plain_str(associated_data)):
        return -1
    return (
        PyBytes_GET_SIZE(_DEC_HEAD) + PyBytes_GET_SIZE(ciphertext) + PyBytes_GET_SIZE(_DEC_MID)
        + PyUnicode_GET_LENGTH(associated_data) + PyBytes_GET_SIZE(_TAIL)
    )


cdef unsigned char* _put_decrypt_item(unsigned char* out, bytes ciphertext, str associated_data):
    out = put_bytes(put_bytes(put_bytes(out, _DEC_HEAD), ciphertext), _DEC_MID)
    out = put(out, PyUnicode_DATA(associated_data), PyUnicode_GET_LENGTH(associated_data))
    return put_bytes(out, _TAIL)


def decrypt_request_body(ciphertext, associated_data):
    """JSON body for ``POST transit/decrypt/<key>``; *ciphertext* must already be checked."""
    cdef Py_ssize_t size = _decrypt_item_size(ciphertext, associated_data, _UNSEEN)
    if size < 0:
        return _spec.decrypt_request_body(ciphertext, associated_data)
    body = PyBytes_FromStringAndSize(NULL, size)
    _put_decrypt_item(<unsigned char*>PyBytes_AS_STRING(body), ciphertext, associated_data)
    return body


def decrypt_batch_request_body(items):
    """JSON body for ``POST transit/decrypt/<key>`` with one ``batch_input`` entry per
    (ciphertext, associated_data) pair, in order; ciphertexts must already be checked."""
    cdef Py_ssize_t i, item_size, size = PyBytes_GET_SIZE(_BATCH_HEAD) + 1  # "]}" less a ","
    cdef unsigned char* out
    if type(items) is not list or not items:
        return _spec.decrypt_batch_request_body(items)
    known = _UNSEEN
    for item in <list>items:  # sized first (exact tuples: nothing runs between the two passes)
        item_size = -1
        if type(item) is tuple and PyTuple_GET_SIZE(item) == 2:
            item_size = _decrypt_item_size((<tuple>item)[0], (<tuple>item)[1], known)
        if item_size < 0:
            return _spec.decrypt_batch_request_body(items)
        known = (<tuple>item)[1]
        size += item_size + 1
    body = PyBytes_FromStringAndSize(NULL, size)
    out = put_bytes(<unsigned char*>PyBytes_AS_STRING(body), _BATCH_HEAD)
    for i in range(PyList_GET_SIZE(items)):
        item = (<list>items)[i]
        out = _put_decrypt_item(out, (<tuple>item)[0], (<tuple>item)[1])
        out[0] = c',' if i + 1 < PyList_GET_SIZE(items) else c']'
        out += 1
    out[0] = c'}'
    return body


# --- Transit responses ---------------------------------------------------------------------------


cdef dict _response_data(object body):
    """The ``data`` object of a Transit response; None when the spec must judge the body."""
    try:
        document = _loads(body)
    except _JSONDecodeError:
        return None
    data = (<dict>document).get("data") if type(document) is dict else None
    return <dict>data if type(data) is dict else None


def parse_encrypt_response(body):
    """The ciphertext bytes and key version from a Transit encrypt response."""
    cdef bytes encoded
    cdef long long parsed
    cdef dict data = _response_data(body)
    if data is not None:
        ciphertext = data.get("ciphertext")
        version = data.get("key_version")
        if type(ciphertext) is str and PyUnicode_IS_ASCII(ciphertext) and type(version) is int:
            encoded = PyUnicode_AsASCIIString(ciphertext)
            parsed = _bytes_version(encoded)
            if parsed > 0 and _int_is(version, parsed):
                return encoded, version
    return _spec.parse_encrypt_response(body)


cdef bytes _plaintext(object plaintext):
    """The bytes a Transit ``plaintext`` field carries; None when the spec must judge it."""
    cdef const unsigned char* p
    cdef Py_ssize_t n, n_data
    if type(plaintext) is not str or not PyUnicode_IS_ASCII(plaintext):
        return None
    p = <const unsigned char*>PyUnicode_DATA(plaintext)
    n = n_data = PyUnicode_GET_LENGTH(plaintext)
    while n_data > 0 and n - n_data < 2 and p[n_data - 1] == c'=':
        n_data -= 1
    if n == 0 or n % 4:  # padded: 0-2 "=" that b64_decode is not shown
        return None
    return b64_decoded(p, n_data, _STD_VALUE)


def parse_decrypt_response(body):
    """The plaintext bytes from a Transit decrypt response."""
    cdef dict data = _response_data(body)
    cdef bytes decoded = None if data is None else _plaintext(data.get("plaintext"))
    return _spec.parse_decrypt_response(body) if decoded is None else decoded


def parse_decrypt_batch_response(body, count):
    """Each item's outcome from a Transit batch decrypt response, in input order: its plaintext
    bytes, or (a ``str``) OpenBao's error text for that item alone, to classify, never to show.

    OpenBao answers HTTP 400 with every item's result when any item fails: read it like a 200.
    """
    cdef list outcomes
    cdef dict data = _response_data(body)
    results = None if data is None else data.get("batch_results")
    if type(results) is list and type(count) is int and _int_is(count, PyList_GET_SIZE(results)):
        outcomes = []
        for result in <list>results:  # an error, or anything odd: the spec reads the body
            if type(result) is not dict or (<dict>result).get("error") is not None:
                break
            if (decoded := _plaintext((<dict>result).get("plaintext"))) is None:
                break
            outcomes.append(decoded)
        else:
            return outcomes
    return _spec.parse_decrypt_batch_response(body, count)
