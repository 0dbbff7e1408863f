"""Names: distinguished names, hostnames, subject alternative names and serial numbers."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

import idna
from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import InvalidName, PKIError

#: The type of one subject alternative name, for callers' type hints.
GeneralName = x509.GeneralName


def parse_dn(dn: str) -> x509.Name:
    """Parse "CN=Example Root CA,O=Example,C=US" (RFC 4514 order) into a Name."""
    if not dn or not dn.strip():
        raise InvalidName("the subject DN is empty")
    try:
        name = x509.Name.from_rfc4514_string(dn.strip())
    except ValueError as exc:
        why = str(exc) or "write it as CN=...,O=...,C=.. with known attribute names"
        raise InvalidName(f"cannot parse the DN {dn!r}: {why}") from None
    for attribute in name:
        if attribute.oid == NameOID.COUNTRY_NAME and len(str(attribute.value)) != 2:
            raise InvalidName(f"the country (C) must be two letters, not {attribute.value!r}")
        if not str(attribute.value).strip():
            raise InvalidName(f"the DN {dn!r} has an empty attribute")
    return name


_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def _a_label(label: str, value: str) -> str:
    """One label as its lower-case A-label: an ASCII label checked, an xn-- label decoded
    and encoded again (IDNA2008), a U-label typed by a person converted."""
    if label.isascii():
        a_label = label.lower()
        if a_label.startswith("xn--"):
            try:
                u_label = idna.decode(a_label)
                again = idna.encode(u_label).decode("ascii")
            except (idna.IDNAError, UnicodeError, ValueError) as exc:
                raise InvalidName(
                    f"{value!r}: the label {label!r} is not a valid IDNA A-label ({exc})"
                ) from None
            if again != a_label:
                raise InvalidName(
                    f"{value!r}: the label {label!r} is not the IDNA2008 encoding of "
                    f"{u_label!r} (that is {again!r})"
                )
    else:
        try:
            a_label = idna.encode(label, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidName(
                f"{value!r} is not a valid internationalized hostname: {exc}"
            ) from None
    if a_label[2:4] == "--" and not a_label.startswith("xn--"):
        raise InvalidName(
            f"{value!r}: the label {label!r} has hyphens in its third and fourth "
            "places, which DNS keeps for encoded labels (xn--)"
        )
    if not _LABEL.match(a_label):
        raise InvalidName(
            f"{value!r} is not a valid hostname (labels are letters, digits and inner "
            "hyphens, at most 63 characters each)"
        )
    return a_label


def normalize_hostname(value: str, *, allow_single_label: bool = False) -> str:
    """Check a DNS name and return its lower-case A-label (IDNA2008) form.

    No empty labels; a wildcard only as the whole left-most label, above two more labels;
    a single-label name (localhost, intranet) only when allowed.
    """
    name = value.strip().removesuffix(".")  # one trailing dot is the root: drop it
    if not name:
        raise InvalidName("a hostname is empty")
    if len(name) > 1024:  # longer than any name; do not run the codec over it
        raise InvalidName(f"{value[:40]!r}... is longer than 253 characters")
    labels = name.split(".")
    if any(label == "" for label in labels):
        raise InvalidName(f"{value!r} has an empty label (two dots in a row)")
    wildcard = labels[0] == "*"
    if wildcard:
        if len(labels) < 3:
            raise InvalidName(f"{value!r}: a wildcard must stand above at least two labels")
        labels = labels[1:]
    out = []
    for label in labels:
        if "*" in label:
            raise InvalidName(f"{value!r}: a wildcard may only be the whole left-most label")
        out.append(_a_label(label, value))
    if len(out) == 1 and not allow_single_label:
        raise InvalidName(
            f"{value!r} is a single-label name: a certificate names a fully qualified "
            "hostname such as host.example.com"
        )
    if out[-1].isdigit():
        raise InvalidName(f"{value!r} is not a valid hostname (the last label is numeric)")
    if len(out[-1]) < 2 or not out[-1][-1].isalpha():
        raise InvalidName(
            f"{value!r} is not a valid hostname (the last label must have two characters "
            "or more and end with a letter)"
        )
    result = ("*." if wildcard else "") + ".".join(out)
    if len(result) > 253:
        raise InvalidName(f"{value!r} is longer than 253 characters")
    return result


def parse_san(value: str, *, allow_single_label: bool = False) -> x509.GeneralName:
    """A hostname or an IP address given by a person, as a GeneralName."""
    text = value.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return x509.DNSName(normalize_hostname(text, allow_single_label=allow_single_label))


def san_to_text(name: x509.GeneralName) -> str:
    """A readable form: "DNS:host", "IP:10.0.0.1", "email:a@b"."""
    if isinstance(name, x509.DNSName):
        return f"DNS:{name.value}"
    if isinstance(name, x509.IPAddress):
        return f"IP:{name.value}"
    if isinstance(name, x509.RFC822Name):
        return f"email:{name.value}"
    if isinstance(name, x509.UniformResourceIdentifier):
        return f"URI:{name.value}"
    return f"{type(name).__name__}:{name.value}"


def san_kind(name: x509.GeneralName) -> str:
    """The kind of a subject alternative name as san_to_text writes it: "DNS", "IP", "email"."""
    return san_to_text(name).partition(":")[0]


def san_from_text(text: str, *, allow_single_label: bool = False) -> x509.GeneralName:
    """The inverse of san_to_text."""
    kind, _, value = text.partition(":")
    kinds = {
        "DNS": lambda v: x509.DNSName(normalize_hostname(v, allow_single_label=allow_single_label)),
        "IP": lambda v: x509.IPAddress(ipaddress.ip_address(v)),
        "email": x509.RFC822Name,
        "URI": x509.UniformResourceIdentifier,
    }
    if kind not in kinds or not value:
        raise InvalidName(f"cannot read the subject alternative name {text!r}")
    try:
        return kinds[kind](value)
    except ValueError as exc:
        raise InvalidName(f"{text!r}: {exc}") from None


def common_name(name: x509.Name) -> str | None:
    """The first CN of a name, or None."""
    attributes = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attributes[0].value) if attributes else None


def serial_hex(serial: int) -> str:
    """A serial number as lower-case hex without leading zeros (how the database keeps it)."""
    return format(serial, "x")


def serial_number(serial: int | str) -> int:
    """A serial as an int, from an int or from hex (our stored form, or any case, colons,
    0x): for display, where the text is known to be hexadecimal."""
    if isinstance(serial, int):
        return serial
    text = str(serial).strip().lower().removeprefix("0x").replace(":", "")
    return int(text or "0", 16)


def _serial_pairs(serial: int | str) -> str:
    text = format(serial_number(serial), "X")
    return text if len(text) % 2 == 0 else "0" + text


def serial_colons(serial: int | str) -> str:
    """THE way people read a serial: upper-case hex byte pairs joined by colons, padded to
    whole bytes (05:35:F2:...), as OpenSSL prints it; no sign byte for a high bit."""
    pairs = _serial_pairs(serial)
    return ":".join(pairs[i : i + 2] for i in range(0, len(pairs), 2))


def serial_filename(serial: int | str) -> str:
    """A serial in file names and URLs, where colons do not fit: the same upper-case byte
    pairs joined by nothing (0535F2...), which is what `openssl x509 -serial` prints."""
    return _serial_pairs(serial)


#: Longest serial a person may type, in hex digits (Certificate.serial holds 64).
MAX_SERIAL_HEX_DIGITS = 64
#: Longest text we try to read as a serial at all (a 64-digit hex serial with colons,
#: prefixes and spaces fits; a page of digits does not reach int()).
MAX_SERIAL_TEXT = 200

_SERIAL_PREFIXES = ("serial=", "serial:", "serial number:", "serial number")
_HEX_PREFIXES = ("0x", "hex:", "hex ")
_DECIMAL_PREFIXES = ("dec:", "decimal:", "dec ", "decimal ")
_HEX = frozenset("0123456789abcdef")


class SerialError(PKIError):
    """The text cannot be a serial number; the message says how to write one."""


class AmbiguousSerial(SerialError):
    """Digits only, and certificates exist for both readings (hex and decimal)."""

    def __init__(self, text: str, readings: tuple[int, ...]):
        self.readings = readings
        hex_value, decimal_value = readings
        super().__init__(
            f"{text.strip()} names two certificates: {serial_colons(hex_value)} (read as "
            f"hexadecimal) and {serial_colons(decimal_value)} (read as decimal). Type "
            f"0x{text.strip()} for the first or dec:{text.strip()} for the second."
        )


@dataclass(frozen=True)
class SerialReading:
    """What a typed serial can mean: one number, or two when it is digits only and could be
    hexadecimal (first) or decimal (second)."""

    values: tuple[int, ...]

    @property
    def ambiguous(self) -> bool:
        return len(self.values) > 1


def parse_serial(text: str) -> SerialReading:
    """Read a serial as people write it: colon hex in any case (05:35:f2), plain hex,
    0x..., `openssl x509 -serial` output (serial=0535F2...), spaces between pairs (certutil),
    dec:/decimal: for an explicit decimal, and bare digits as either hex or decimal.
    SerialError with a message for anything else."""
    cleaned = " ".join(str(text).split()).lower()
    if not cleaned:
        raise SerialError("Type a serial number.")
    if len(cleaned) > MAX_SERIAL_TEXT:
        raise SerialError("That is too long for a serial number.")
    explicit_hex = explicit_decimal = False
    for prefix in _SERIAL_PREFIXES:  # openssl x509 -serial prints hex after "serial="
        if cleaned.startswith(prefix):
            cleaned, explicit_hex = cleaned.removeprefix(prefix).strip(), True
            break
    for prefix in _HEX_PREFIXES:
        if cleaned.startswith(prefix):
            cleaned, explicit_hex = cleaned.removeprefix(prefix).strip(), True
            break
    else:
        for prefix in _DECIMAL_PREFIXES:
            if cleaned.startswith(prefix) and not explicit_hex:
                cleaned, explicit_decimal = cleaned.removeprefix(prefix).strip(), True
                break
    if ":" in cleaned:
        groups = cleaned.split(":")
        if any(not 1 <= len(group.strip()) <= 2 for group in groups):
            raise SerialError("Between colons a serial has two hexadecimal digits (05:35:F2:...).")
        cleaned, explicit_hex = "".join(group.strip() for group in groups), True
    digits = cleaned.replace(" ", "").replace("-", "")
    if not digits:
        raise SerialError("Type a serial number.")
    if explicit_decimal:
        if not digits.isdigit():
            raise SerialError("A decimal serial number has only the digits 0-9.")
        values = (int(digits),)
    elif not set(digits) <= _HEX:
        raise SerialError(
            "A serial number is hexadecimal (0-9, A-F), like 05:35:F2:... or 0535F2..., "
            "or decimal with dec: in front."
        )
    elif digits.isdigit() and not explicit_hex:
        values = (int(digits, 16), int(digits))
    else:
        values = (int(digits, 16),)
    fitting = tuple(dict.fromkeys(v for v in values if v.bit_length() <= 4 * MAX_SERIAL_HEX_DIGITS))
    if not fitting:
        raise SerialError(
            f"A serial number has at most {MAX_SERIAL_HEX_DIGITS} hexadecimal digits."
        )
    return SerialReading(fitting)
