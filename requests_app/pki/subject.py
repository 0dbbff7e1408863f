"""Subjects: the attributes a profile takes from a CSR, checked and rebuilt.

A certificate's subject is never copied from the requester's DER. Each attribute a profile
accepts is read as text, checked (one line of visible, NFC-normalised characters within its
RFC 5280 upper bound) and written again with its proper string type; the attributes a
profile does not take are dropped and listed, so that an agent sees them before approving.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID

from .errors import CSRError, InvalidName
from .names import normalize_hostname

#: Attributes a profile may accept: short name -> (OID, RFC 5280 upper bound, a reading).
ATTRIBUTES = {
    "C": (NameOID.COUNTRY_NAME, 2, "country"),
    "ST": (NameOID.STATE_OR_PROVINCE_NAME, 128, "state or province"),
    "L": (NameOID.LOCALITY_NAME, 128, "locality"),
    "O": (NameOID.ORGANIZATION_NAME, 64, "organization"),
    "OU": (NameOID.ORGANIZATIONAL_UNIT_NAME, 64, "organizational unit"),
    "CN": (NameOID.COMMON_NAME, 64, "common name"),
}
#: Attributes that may appear more than once in one subject.
REPEATABLE = frozenset({"OU"})
#: A subject with more attributes than this is refused before anything else is read.
MAX_ATTRIBUTES = 16

_BY_OID = {oid: short for short, (oid, _, _) in ATTRIBUTES.items()}
_SHORT_NAMES = {
    NameOID.EMAIL_ADDRESS: "emailAddress",
    NameOID.SERIAL_NUMBER: "serialNumber",
    NameOID.STREET_ADDRESS: "street",
    NameOID.DOMAIN_COMPONENT: "DC",
    NameOID.USER_ID: "UID",
    NameOID.GIVEN_NAME: "GN",
    NameOID.SURNAME: "SN",
    NameOID.TITLE: "title",
    NameOID.POSTAL_CODE: "postalCode",
    NameOID.PSEUDONYM: "pseudonym",
    NameOID.X500_UNIQUE_IDENTIFIER: "x500UniqueIdentifier",
    NameOID.BUSINESS_CATEGORY: "businessCategory",
    NameOID.JURISDICTION_COUNTRY_NAME: "jurisdictionC",
    NameOID.ORGANIZATION_IDENTIFIER: "organizationIdentifier",
    **{oid: short for short, oid in ((s, v[0]) for s, v in ATTRIBUTES.items())},
}
_COUNTRY = re.compile(r"^[A-Z]{2}$")
# Control characters people know by a name; others are shown by their Unicode name.
_CONTROL_NAMES = {
    "\x00": "NUL",
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    "\x1b": "ESC",
    "\x7f": "DEL",
}
# Categories never accepted: controls (C0, C1, DEL), format characters (the bidirectional
# overrides and isolates among them), surrogates, private use, unassigned code points,
# and the line and paragraph separators.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}


def describe_char(ch: str) -> str:
    """A character as a person can recognise it: "U+000A (a line break)"."""
    name = _CONTROL_NAMES.get(ch) or unicodedata.name(ch, "")
    code = f"U+{ord(ch):04X}"
    return f"{code} ({name})" if name else code


def escape_text(text: str) -> str:
    """Text with every control, format or separator character written as an escape
    (\\n, \\x00, \\u202e), so a terminal or a page shows it instead of obeying it."""
    out = []
    for ch in str(text):
        if unicodedata.category(ch) in _REFUSED_CATEGORIES or ch == "\\":
            if ch == "\\":
                out.append("\\\\")
            elif ch in "\n\r\t":
                out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
            elif ord(ch) < 0x100:
                out.append(f"\\x{ord(ch):02x}")
            elif ord(ch) < 0x10000:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return "".join(out)


def check_characters(value: str, *, what: str) -> None:
    """Refuse control, format (bidirectional overrides and isolates among them), private-use,
    unassigned and separator characters, naming the first one found."""
    for ch in value:
        category = unicodedata.category(ch)
        if category in _REFUSED_CATEGORIES:
            kind = {
                "Cc": "a control character",
                "Cf": "an invisible formatting character",
                "Zl": "a line separator",
                "Zp": "a paragraph separator",
                "Co": "a private-use character",
                "Cs": "a lone surrogate",
                "Cn": "an unassigned code point",
            }[category]
            hint = (
                " that changes the direction text is shown in"
                if "\u202a" <= ch <= "\u202e" or "\u2066" <= ch <= "\u2069"
                else ""
            )
            raise InvalidName(
                f"the {what} contains {kind}{hint}, {describe_char(ch)}: a name in a "
                "certificate is one line of visible text"
            )


def check_text(value: str, *, what: str, limit: int) -> str:
    """One line of visible text, NFC-normalised, surrounding blanks removed, 1..limit
    characters; InvalidName names what is wrong with it."""
    check_characters(value, what=what)
    text = unicodedata.normalize("NFC", value).strip()
    if not text:
        raise InvalidName(f"the {what} is empty")
    if len(text) > limit:
        raise InvalidName(
            f"the {what} is {len(text)} characters long; at most {limit} are allowed "
            "(RFC 5280's upper bound)"
        )
    return text


@dataclass(frozen=True)
class CheckedSubject:
    """The attributes a certificate's subject will have, and what was left out."""

    #: ("CN", "www.example.com"), ... in the order the subject is written.
    attributes: tuple[tuple[str, str], ...]
    #: What the profile dropped, as "OU=Sales", "emailAddress=a@example.com".
    dropped: tuple[str, ...] = ()

    def get(self, short: str) -> str | None:
        """The first value of an attribute ("CN"), or None."""
        return next((value for name, value in self.attributes if name == short), None)

    @property
    def name(self) -> x509.Name:
        """The subject to issue: PrintableString for C, UTF8String for the others."""
        return x509.Name(
            [
                x509.NameAttribute(
                    ATTRIBUTES[short][0],
                    value,
                    _ASN1Type.PrintableString if short == "C" else _ASN1Type.UTF8String,
                )
                for short, value in self.attributes
            ]
        )

    @property
    def text(self) -> str:
        """The subject as RFC 4514 text (most specific attribute first)."""
        return self.name.rfc4514_string()


def _attribute_label(attribute: x509.NameAttribute) -> str:
    oid = attribute.oid
    return _SHORT_NAMES.get(oid) or getattr(oid, "_name", None) or oid.dotted_string


def _shown(attribute: x509.NameAttribute) -> str:
    value = attribute.value
    if isinstance(value, bytes):
        return f"{_attribute_label(attribute)}=(binary, {len(value)} bytes)"
    return f"{_attribute_label(attribute)}={escape_text(value)}"


def _hostname_cn(value: str, *, allow_single_label: bool) -> str:
    """A server's CN: a descriptive label (it has blanks) stays; a name without blanks is a
    hostname or an IP address and must be a valid one, written as it will be in the SAN."""
    if any(ch.isspace() for ch in value):
        return value
    try:
        return str(ipaddress.ip_address(value.strip("[]")))
    except ValueError:
        pass
    return normalize_hostname(value, allow_single_label=allow_single_label)


def order(attributes: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """Attributes in the conventional order, most significant first (C, ST, L, O, OU, CN)."""
    rank = {short: index for index, short in enumerate(ATTRIBUTES)}
    return tuple(sorted(attributes, key=lambda item: rank[item[0]]))


def check_values(
    values: Sequence[tuple[str, str]],
    *,
    accepted: Sequence[str],
    where: str = "",
    hostname_cn: bool = False,
    allow_single_label: bool = False,
) -> tuple[tuple[str, str], ...]:
    """Check typed or read attribute values against what a profile accepts."""
    seen: set[str] = set()
    out = []
    for short, raw in values:
        _, limit, reading = ATTRIBUTES[short]
        what = f"{reading} ({short}){where}"
        if short in seen and short not in REPEATABLE:
            raise InvalidName(f"the subject{where} has more than one {reading} ({short})")
        seen.add(short)
        # A country is checked by its own rule, which says more than a length would.
        value = check_text(raw, what=what, limit=128 if short == "C" else limit)
        if short == "C":
            value = value.upper()
            if not _COUNTRY.match(value):
                raise InvalidName(
                    f"the {what} must be a two-letter country code such as DE or US, "
                    f"not {escape_text(value)!r}"
                )
        if short == "CN" and len(value.encode("utf-8")) > limit:
            # cryptography (and so the certificate builder) bounds a CN by its UTF-8 bytes.
            raise InvalidName(
                f"the {what} takes {len(value.encode('utf-8'))} bytes in UTF-8; at most "
                f"{limit} fit in a common name (fewer characters outside ASCII)"
            )
        if short == "CN" and hostname_cn:
            try:
                value = _hostname_cn(value, allow_single_label=allow_single_label)
            except InvalidName as exc:
                raise InvalidName(f"the {what} is not a valid hostname: {exc}") from None
            if len(value) > limit:
                raise InvalidName(
                    f"the {what} is {len(value)} characters long as a hostname; at most "
                    f"{limit} fit in a common name: put the name in the subjectAltName only"
                )
        if short not in accepted:
            raise InvalidName(f"this profile does not take a {reading} ({short}){where}")
        out.append((short, value))
    return order(out)


def check_subject(
    subject: x509.Name,
    *,
    accepted: Sequence[str],
    requester_email: str,
    hostname_cn: bool = False,
    allow_single_label: bool = False,
) -> CheckedSubject:
    """Rebuild a CSR's subject under a profile: the accepted attributes checked, the
    others dropped and listed; an emailAddress that is not the requester's is refused."""
    attributes = list(subject)
    if len(attributes) > MAX_ATTRIBUTES:
        raise CSRError(
            f"The CSR's subject has {len(attributes)} attributes; at most {MAX_ATTRIBUTES} "
            "are read."
        )
    kept: list[tuple[str, str]] = []
    dropped: list[str] = []
    for attribute in attributes:
        label = _attribute_label(attribute)
        if isinstance(attribute.value, str):
            try:  # even a dropped value is refused when it hides characters
                check_characters(attribute.value, what=f"{label} attribute")
            except InvalidName as exc:
                raise CSRError(f"The CSR's subject is refused: {exc}.") from None
        short = _BY_OID.get(attribute.oid)
        if attribute.oid == NameOID.EMAIL_ADDRESS:
            address = str(attribute.value).strip()
            if address.lower() != (requester_email or "").strip().lower():
                raise CSRError(
                    f"The CSR's subject names the email address {escape_text(address)}, "
                    f"which is not yours ({requester_email}): a certificate names only the "
                    "requester's own address. Make the CSR without an emailAddress, or "
                    "submit it with that address as yours."
                )
            dropped.append(_shown(attribute))  # the address goes in the subjectAltName
        elif short is None or short not in accepted or not isinstance(attribute.value, str):
            dropped.append(_shown(attribute))
        else:
            kept.append((short, attribute.value))
    try:
        checked = check_values(
            kept,
            accepted=accepted,
            where=" of the CSR",
            hostname_cn=hostname_cn,
            allow_single_label=allow_single_label,
        )
    except InvalidName as exc:
        raise CSRError(f"The CSR's subject is refused: {exc}.") from None
    return CheckedSubject(attributes=checked, dropped=tuple(dropped))


#: The longest subject search key stored (Certificate.subject_search).
SEARCH_KEY_LENGTH = 255


def subject_search_key(subject: str, *, name: x509.Name | None = None) -> str:
    """What a subject search matches the start of: the subject's common name, lower-cased
    (the last CN when there are several), or the whole RFC 4514 subject text lower-cased
    when it has no CN or cannot be read; at most SEARCH_KEY_LENGTH characters. name: the
    x509.Name that subject is the text of, when the caller has it (not parsed again)."""
    try:
        if name is None:
            name = x509.Name.from_rfc4514_string(subject)
        cns = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, TypeError):
        cns = []
    text = str(cns[-1].value) if cns else subject
    return unicodedata.normalize("NFC", text).lower()[:SEARCH_KEY_LENGTH]
