"""How Dogtag's identifiers map to ca-portal's, one rule for every REST resource.

Requests: ca-portal's public request ID is 20 characters of Crockford's base32, that is
100 random bits. Read as a number, those bits are the Dogtag request ID: in URLs and
`requestURL` it is written in decimal (as Dogtag writes RequestId in URLs), in JSON
`requestID`/`requestId` in hexadecimal with `0x` (as Dogtag's JSON does). Both name the same
request as the public ID shown on the pages and mailed to the requester, and every path that
takes a request ID also accepts that public ID as is (any case, with or without hyphens).
Parsing: `0x...` is hexadecimal; all digits is decimal (a 20-digit string that names no
request that way is tried as a public ID); anything else is a public ID.

Certificates: ca-portal's serial is lower-case hexadecimal. In JSON `id`/`certId` it is
`0x` + that hex (Dogtag's CertId), in `certURL` decimal. A path serial is read as Dogtag's
CertId reads it: `0x...` hexadecimal, all digits decimal; text with a hex letter and no `0x`
(how the portal's pages show serials) is hexadecimal too.
"""

from __future__ import annotations

from ..models import (
    PUBLIC_ID_ALPHABET,
    PUBLIC_ID_LENGTH,
    Certificate,
    CertificateRequest,
    is_public_id,
    normalize_public_id,
)

_BITS = 5 * PUBLIC_ID_LENGTH
_VALUE = {ch: i for i, ch in enumerate(PUBLIC_ID_ALPHABET)}
#: Longer than any serial (159 bits, 48 decimal digits) or request number: not looked up.
MAX_ID_TEXT = 80


def request_number(public_id: str) -> int:
    """The Dogtag request number of a public request ID."""
    number = 0
    for ch in public_id:
        number = number * 32 + _VALUE[ch]
    return number


def public_id_of(number: int) -> str | None:
    """The public request ID a Dogtag request number names, or None if none can."""
    if number < 0 or number >= 1 << _BITS:
        return None
    chars = []
    for _ in range(PUBLIC_ID_LENGTH):
        number, digit = divmod(number, 32)
        chars.append(PUBLIC_ID_ALPHABET[digit])
    return "".join(reversed(chars))


def request_decimal(req: CertificateRequest) -> str:
    return str(request_number(req.public_id))


def request_hex(req: CertificateRequest) -> str:
    return f"0x{request_number(req.public_id):x}"


def _number(text: str) -> int | None:
    try:
        if text[:2].lower() == "0x":
            return int(text[2:], 16) if text[2:] else None
        return int(text, 10) if text.isdigit() and text.isascii() else None
    except ValueError:
        return None


def find_request(text: str) -> CertificateRequest | None:
    """The request a Dogtag request ID (decimal or 0x-hex) or a public ID names."""
    text = str(text or "").strip()
    if not text or len(text) > MAX_ID_TEXT:
        return None
    rows = CertificateRequest.objects.select_related("certificate")
    number = _number(text)
    if number is not None:
        public_id = public_id_of(number)
        found = rows.filter(public_id=public_id).first() if public_id else None
        if found is not None or text[:2].lower() == "0x":
            return found
    return rows.by_public_id(text) if is_public_id(text) else None


def request_id_shown(text: str) -> str:
    """A request ID as a client sent it, in Dogtag's message form (0x-hex when numeric)."""
    text = str(text or "").strip()[:MAX_ID_TEXT]
    number = _number(text)
    if number is None and is_public_id(text):
        number = request_number(normalize_public_id(text))
    return f"0x{number:x}" if number is not None else text


def serial_id(cert: Certificate) -> str:
    """The serial as Dogtag's JSON writes it: 0x and lower-case hex."""
    return f"0x{cert.serial}"


def serial_decimal(cert: Certificate) -> str:
    return str(int(cert.serial, 16))


def serial_hex(text: str) -> str | None:
    """Our lower-case hex serial for a path serial (see the module's rules), or None."""
    text = str(text or "").strip().replace(":", "")
    if not text or len(text) > MAX_ID_TEXT:
        return None
    number = _number(text)
    if number is None and text[:2].lower() != "0x":
        try:
            number = int(text, 16)
        except ValueError:
            return None
    return None if number is None or number < 0 else format(number, "x")


def find_certificate(text: str) -> Certificate | None:
    """The certificate a Dogtag serial names (the newest of that serial, as on every page)."""
    hex_serial = serial_hex(text)
    if hex_serial is None:
        return None
    return Certificate.objects.select_related("ca").by_serial(int(hex_serial, 16))
