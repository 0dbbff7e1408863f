"""Names: distinguished names, hostnames, subject alternative names and serial numbers."""

from __future__ import annotations

import ipaddress
import re

from cryptography import x509
from cryptography.x509.oid import NameOID

from .errors import InvalidName

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


def normalize_hostname(value: str) -> str:
    """Check a DNS name and return its lower-case A-label (IDNA) form.

    No empty labels; a wildcard only as the whole left-most label, above two more labels.
    """
    name = value.strip().removesuffix(".")  # one trailing dot is the root: drop it
    if not name:
        raise InvalidName("a hostname is empty")
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
        try:
            # ASCII labels skip the codec, so an over-long one gets the plain message below.
            a_label = label if label.isascii() else label.encode("idna").decode("ascii")
        except UnicodeError:
            raise InvalidName(f"{value!r} is not a valid internationalized hostname") from None
        a_label = a_label.lower()
        if not _LABEL.match(a_label):
            raise InvalidName(
                f"{value!r} is not a valid hostname (labels are letters, digits and inner hyphens)"
            )
        out.append(a_label)
    if out[-1].isdigit():
        raise InvalidName(f"{value!r} is not a valid hostname (the last label is numeric)")
    result = ("*." if wildcard else "") + ".".join(out)
    if len(result) > 253:
        raise InvalidName(f"{value!r} is longer than 253 characters")
    return result


def parse_san(value: str) -> x509.GeneralName:
    """A hostname or an IP address given by a person, as a GeneralName."""
    text = value.strip()
    try:
        return x509.IPAddress(ipaddress.ip_address(text.strip("[]")))
    except ValueError:
        return x509.DNSName(normalize_hostname(text))


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


def san_from_text(text: str) -> x509.GeneralName:
    """The inverse of san_to_text."""
    kind, _, value = text.partition(":")
    kinds = {
        "DNS": lambda v: x509.DNSName(normalize_hostname(v)),
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
    """A serial number as lower-case hex without leading zeros."""
    return format(serial, "x")


def serial_colons(serial: int | str) -> str:
    """A serial (an int, or our lower-case hex) as colon-separated upper-case byte pairs."""
    text = serial_hex(serial) if isinstance(serial, int) else serial
    padded = text if len(text) % 2 == 0 else "0" + text
    return ":".join(padded[i : i + 2] for i in range(0, len(padded), 2)).upper()
