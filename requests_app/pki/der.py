"""The one minimal DER reader: tag, length and contents of a TLV, nothing more.

`cryptography` parses everything else; this covers the two places it has no API for: where a
DER CSR ends inside padded input, and the raw subjectPublicKey bits that OCSP hashes.
"""

from __future__ import annotations

SEQUENCE = 0x30


def read_header(data: bytes, pos: int = 0) -> tuple[int, int, int] | None:
    """(tag, offset of the contents, length of the contents) of the TLV at pos, or None when
    its header is cut short or uses a length form we do not read (indefinite, over 4 bytes)."""
    if len(data) < pos + 2:
        return None
    tag, first = data[pos], data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, first
    size = first & 0x7F
    if not 1 <= size <= 4 or len(data) < pos + 2 + size:
        return None
    return tag, pos + 2 + size, int.from_bytes(data[pos + 2 : pos + 2 + size], "big")


def leading_sequence(data: bytes) -> bytes | None:
    """The DER SEQUENCE at the start of data, if only whitespace follows it."""
    header = read_header(data)
    if header is None or header[0] != SEQUENCE:
        return None
    _, start, length = header
    end = start + length
    if end > len(data) or data[end:].strip():
        return None
    return data[:end]


def subject_public_key_bits(spki: bytes) -> bytes:
    """The contents of the subjectPublicKey BIT STRING of a DER SubjectPublicKeyInfo,
    without the unused-bits byte (what RFC 6960 hashes as issuerKeyHash)."""
    _, pos, _ = read_header(spki)  # SubjectPublicKeyInfo SEQUENCE
    _, pos, length = read_header(spki, pos)  # AlgorithmIdentifier SEQUENCE
    _, pos, length = read_header(spki, pos + length)  # subjectPublicKey BIT STRING
    return spki[pos + 1 : pos + length]


def _element(data: bytes, pos: int) -> tuple[int, int, int] | None:
    """(tag, offset of the contents, offset after the element) of the TLV at pos."""
    header = read_header(data, pos)
    if header is None:
        return None
    tag, start, length = header
    end = start + length
    return (tag, start, end) if end <= len(data) else None


def csr_key_parameters_tag(csr_der: bytes) -> int | None:
    """The tag of the key algorithm's parameters in a DER CSR (OBJECT IDENTIFIER 0x06 for
    a named curve, SEQUENCE 0x30 for explicit curve parameters, NULL 0x05); None when the
    CSR cannot be walked or the parameters are absent."""
    steps = [
        ("enter", SEQUENCE),  # CertificationRequest
        ("enter", SEQUENCE),  # certificationRequestInfo
        ("skip", 0x02),  # version
        ("skip", SEQUENCE),  # subject
        ("enter", SEQUENCE),  # subjectPKInfo
        ("enter", SEQUENCE),  # algorithm
        ("skip", 0x06),  # its OBJECT IDENTIFIER; the parameters follow
    ]
    pos = 0
    for step, tag in steps:
        element = _element(csr_der, pos)
        if element is None or element[0] != tag:
            return None
        pos = element[1] if step == "enter" else element[2]
    element = _element(csr_der, pos)
    return element[0] if element else None
