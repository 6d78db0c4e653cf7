# cython: language_level=3
# Byte-level helpers the compiled codec is built from: table scans, base64, decimal and copies
# over ``const unsigned char*`` (the only Python objects: bytes made or read whole by the last
# two). ``_codec.pyx`` owns the tables and passes them in. A .pxd because inline functions are
# shared by cimport and compiled into the caller.

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from libc.stdint cimport uint64_t
from libc.string cimport memcpy


cdef inline unsigned char* put(unsigned char* out, const void* data, Py_ssize_t n) noexcept nogil:
    """Copy *n* bytes to *out*; return the end of what was written."""
    memcpy(out, data, n)
    return out + n


cdef inline bint all_in(
    const unsigned char* p, Py_ssize_t n, const unsigned char* table
) noexcept nogil:
    """True when each of the *n* bytes at *p* is marked in the 256-entry *table*."""
    cdef Py_ssize_t i
    for i in range(n):
        if not table[p[i]]:
            return False
    return True


cdef inline uint64_t has_zero_byte(uint64_t w) noexcept nogil:
    return (w - 0x0101010101010101ULL) & ~w & 0x8080808080808080ULL


cdef inline bint json_plain(
    const unsigned char* p, Py_ssize_t n, const unsigned char* table
) noexcept nogil:
    """``all_in(p, n, table)`` for *table* = printable ASCII but ``"`` and ``\\``, eight bytes a
    step (request bodies carry a ~400-byte AAD; a byte loop over it was a third of the body)."""
    cdef uint64_t w = 0
    cdef Py_ssize_t i = 0
    while i + 8 <= n:
        memcpy(&w, p + i, 8)
        if (
            ((w - 0x2020202020202020ULL) & ~w & 0x8080808080808080ULL)  # a byte < 0x20
            | ((w + 0x0101010101010101ULL) | w) & 0x8080808080808080ULL  # a byte > 0x7E
            | has_zero_byte(w ^ 0x2222222222222222ULL)  # '"'
            | has_zero_byte(w ^ 0x5C5C5C5C5C5C5C5CULL)  # '\\'
        ):
            return False
        i += 8
    return all_in(p + i, n - i, table)


cdef inline void b64_encode(
    const unsigned char* src, Py_ssize_t n, unsigned char* dst, const char* alphabet
) noexcept nogil:
    """Padded base64 of the *n* bytes at *src* into *dst*, ``(n + 2) // 3 * 4`` bytes."""
    cdef Py_ssize_t i = 0
    cdef unsigned int v
    while i + 3 <= n:
        v = (<unsigned int>src[i] << 16) | (<unsigned int>src[i + 1] << 8) | src[i + 2]
        dst[0] = alphabet[v >> 18]
        dst[1] = alphabet[(v >> 12) & 63]
        dst[2] = alphabet[(v >> 6) & 63]
        dst[3] = alphabet[v & 63]
        i += 3
        dst += 4
    if i < n:
        v = (<unsigned int>src[i] << 16) | ((<unsigned int>src[i + 1] << 8) if n - i == 2 else 0)
        dst[0] = alphabet[v >> 18]
        dst[1] = alphabet[(v >> 12) & 63]
        dst[2] = alphabet[(v >> 6) & 63] if n - i == 2 else c'='
        dst[3] = c'='


cdef inline bint b64_decode(
    const unsigned char* p, Py_ssize_t n, const signed char* table, unsigned char* out
) noexcept nogil:
    """Decode *n* unpadded base64 characters (*table*: each one's 6-bit value, else -1) into
    *out*, ``n * 3 // 4`` bytes. False for a character outside the alphabet, a lone last one, or
    trailing bits that are not zero: a non-canonical spelling, which the spec judges (binascii's
    answer to those has changed between CPython releases; to a canonical one it has not)."""
    cdef Py_ssize_t i = 0
    cdef int q0, q1, q2, q3
    cdef unsigned int v
    while i + 4 <= n:
        q0, q1, q2, q3 = table[p[i]], table[p[i + 1]], table[p[i + 2]], table[p[i + 3]]
        if (q0 | q1 | q2 | q3) < 0:
            return False
        v = (<unsigned int>q0 << 18) | (<unsigned int>q1 << 12) | (<unsigned int>q2 << 6) | q3
        out[0], out[1], out[2] = v >> 16, (v >> 8) & 255, v & 255
        i += 4
        out += 3
    if n - i == 1:
        return False
    if n - i >= 2:
        q0, q1 = table[p[i]], table[p[i + 1]]
        q2 = table[p[i + 2]] if n - i == 3 else 0
        if (q0 | q1 | q2) < 0 or (q2 & 3 if n - i == 3 else q1 & 15):
            return False
        v = (<unsigned int>q0 << 18) | (<unsigned int>q1 << 12) | (<unsigned int>q2 << 6)
        out[0] = v >> 16
        if n - i == 3:
            out[1] = (v >> 8) & 255
    return True


cdef inline Py_ssize_t decimal(long long value, char* buf) noexcept nogil:
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


cdef inline unsigned char* put_bytes(unsigned char* out, bytes piece) noexcept:
    """``put`` of a whole bytes object."""
    return put(out, PyBytes_AS_STRING(piece), PyBytes_GET_SIZE(piece))


cdef inline bytes b64_decoded(const unsigned char* p, Py_ssize_t n, const signed char* table):
    """``b64_decode`` into a new bytes object; None where it returns False."""
    cdef bytes result = PyBytes_FromStringAndSize(NULL, n * 3 // 4)
    return result if b64_decode(p, n, table, <unsigned char*>PyBytes_AS_STRING(result)) else None
