"""Property-based tests of the subject and name policy (issue 12).

Generated subjects and names go through the enrollment page. A case built valid must be
accepted, and its certificate has no finding at WARNING or above from pkilint's RFC 5280
linter (run in-process); a case with one injected defect must be refused with a 4xx page
that names that defect, storing nothing; a wild case is either accepted and lints clean, or
refused naming a known cause. A full run (CI=true) makes over 2,000 cases.
"""

from __future__ import annotations

import html
import os
import re
import unicodedata

import pytest
import validators
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from pkilint import loader, validation
from pkilint.pkix import certificate, extension, name

from requests_app import pki, services
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers import hostile
from tests.helpers.mailbox import confirmed

CI = os.environ.get("CI") == "true"
# Cases per test: (default run, full CI run). 3 x 700 = 2,100 in CI.
VALID_CASES = 700 if CI else 60
DEFECT_CASES = 700 if CI else 60
WILD_CASES = 700 if CI else 60

PROPERTY_SETTINGS = {
    "deadline": None,
    "derandomize": not CI,  # the default run is the same every time; CI explores
    "suppress_health_check": [HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
}

REQUESTER = "ada@example.test"

# cryptography warns about over-long attributes in the CSRs these tests make on purpose.
pytestmark = pytest.mark.filterwarnings("ignore:Attribute's length:UserWarning")

# pkilint's RFC 5280 certificate linter, as lint_pkix_cert builds it.
RFC5280 = certificate.create_pkix_certificate_validator_container(
    certificate.create_decoding_validators(
        name.ATTRIBUTE_TYPE_MAPPINGS, extension.EXTENSION_MAPPINGS
    ),
    [
        certificate.create_issuer_validator_container([]),
        certificate.create_validity_validator_container(),
        certificate.create_subject_validator_container([]),
        certificate.create_extensions_validator_container([]),
        certificate.create_spki_validator_container([]),
    ],
)


# The one finding set aside: pkilint's RFC 5280 linter reads dNSNames by the preferred name
# syntax alone and so reports every wildcard ("*.example.com") as
# pkix.invalid_domain_name_syntax, although RFC 5280 4.2.1.6 leaves wildcards to other
# standards (RFC 6125, the CA/B Forum's rules, whose linter accepts them). A wildcard name
# is exempt only when the name below its "*." passes the very same check.
_WILDCARD = re.compile(r'^Invalid domain name syntax: "\*\.(.+)"$')


def _wildcard_only(found) -> bool:
    match = _WILDCARD.match(found.message or "")
    return (
        found.finding.code == "pkix.invalid_domain_name_syntax"
        and match is not None
        and validators.domain(match.group(1)) is True
    )


def findings(pem: str) -> list[str]:
    """pkilint's RFC 5280 findings at WARNING or worse for a certificate."""
    der = pki.load_pem(pem).public_bytes(serialization.Encoding.DER)
    document = loader.RFC5280CertificateDocumentLoader().load_der_document(der, "issued")
    return [
        f"{found.finding.severity} {found.finding.code} {found.message or ''}"
        for result in RFC5280.validate(document.root)
        for found in result.finding_descriptions
        if found.finding.severity <= validation.ValidationFindingSeverity.WARNING
        and not _wildcard_only(found)
    ]


# --- what is generated ------------------------------------------------------------

LETTERS = st.characters(categories=("L", "N"))
VISIBLE = st.characters(categories=("L", "M", "N", "P", "S", "Zs"))


def _fits(text: str, max_size: int, *, cn: bool) -> bool:
    checked = unicodedata.normalize("NFC", text).strip()
    # A CN also fits in 64 bytes of UTF-8 (the builder's bound).
    return 1 <= len(checked) <= max_size and (not cn or len(checked.encode()) <= 64)


def visible_text(max_size: int, *, cn: bool = False) -> st.SearchStrategy[str]:
    """Text a profile accepts: visible characters, NFC and stripped within the bound."""
    return (
        st.tuples(LETTERS, st.text(VISIBLE, max_size=max_size - 1))
        .map("".join)
        .filter(lambda t: _fits(t, max_size, cn=cn))
    )


LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?\Z").filter(lambda s: s[2:4] != "--")
TLD = st.from_regex(r"\A[a-z][a-z0-9]{0,5}[a-z]\Z")
U_LABELS = ["bücher", "münchen", "日本語", "пример", "ελληνικά", "straße", "ünïcödé"]


@st.composite
def hostnames(draw) -> str:
    """A valid DNS name: ASCII labels, a letter at the end, a wildcard sometimes."""
    labels = [*draw(st.lists(LABEL, min_size=1, max_size=3)), draw(TLD)]
    if draw(st.booleans()) and draw(st.booleans()):
        labels = ["*", *labels] if len(labels) >= 2 else labels
    return ".".join(labels)


@st.composite
def valid_case(draw) -> dict:
    """A subject and names that the profile accepts as they are."""
    profile = draw(st.sampled_from(["server", "user", "agent"]))
    attributes = []
    dns: list[str] = []
    extra: list[str] = []
    if profile == "server":
        dns = draw(st.lists(hostnames(), min_size=0, max_size=3))
        cn = draw(
            st.one_of(
                hostnames(),
                st.tuples(
                    st.text(LETTERS, min_size=1, max_size=20),
                    st.text(LETTERS, min_size=1, max_size=20),
                )
                .map(" ".join)
                .filter(lambda t: _fits(t, 64, cn=True)),
            )
        )
        if " " in cn and not dns:
            dns = [draw(hostnames())]
        attributes.append((NameOID.COMMON_NAME, cn))
        for oid, bound in (
            (NameOID.ORGANIZATION_NAME, 64),
            (NameOID.LOCALITY_NAME, 128),
            (NameOID.STATE_OR_PROVINCE_NAME, 128),
        ):
            if draw(st.booleans()):
                attributes.append((oid, draw(visible_text(bound))))
        if draw(st.booleans()):
            attributes.append((NameOID.COUNTRY_NAME, draw(st.from_regex(r"\A[A-Za-z]{2}\Z"))))
        if draw(st.booleans()):
            extra = [f"{draw(st.sampled_from(U_LABELS))}.{draw(TLD)}"]
    else:
        attributes.append((NameOID.COMMON_NAME, draw(visible_text(64, cn=True))))
        for oid in (NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME):
            if draw(st.booleans()):
                attributes.append((oid, draw(visible_text(64))))
    draw(st.randoms()).shuffle(attributes)
    return {"profile": profile, "attributes": attributes, "dns": dns, "extra": extra}


DEFECTS = {
    "control character": (
        st.sampled_from(["\x00", "\n", "\r", "\x07", "\x1b", "\x7f", "\x85", "\x9b"]),
        "control character",
    ),
    "direction override": (
        st.sampled_from(
            [
                "\u202a",
                "\u202b",
                "\u202c",
                "\u202d",
                "\u202e",
                "\u2066",
                "\u2067",
                "\u2068",
                "\u2069",
            ]
        ),
        "changes the direction",
    ),
    "format character": (
        st.sampled_from(["\u200b", "\u200d", "\ufeff", "\u00ad", "\u2060"]),
        "invisible formatting character",
    ),
    "separator": (st.sampled_from(["\u2028", "\u2029"]), "separator"),
}
BAD_NAMES = {
    "xn--0.example.test": "not a valid IDNA A-label",
    "xn--ls8h.example.test": "not a valid IDNA A-label",
    "host.example.t": "two characters or more",
    "ab--x.example.test": "third and fourth places",
    "*.*.example.test": "wildcard",
    "a*.example.test": "wildcard",
    "intranet": "single-label",
    "host.example.42": "numeric",
    "host.example.t3": "end with a letter",
    "under_score.example.test": "letters, digits and inner hyphens",
    "-lead.example.test": "letters, digits and inner hyphens",
    "a..example.test": "empty label",
    ("x" * 64) + ".example.test": "letters, digits and inner hyphens",
    "bücher.example.test": "non-ASCII",
    "пример.example.test": "non-ASCII",
}


@st.composite
def defect_case(draw) -> dict:
    """A valid case with exactly one defect, and what its refusal must say."""
    case = draw(valid_case())
    kind = draw(
        st.sampled_from([*DEFECTS, "too long", "country", "foreign email", "bad name", "two CNs"])
    )
    attributes = case["attributes"]
    if kind in DEFECTS:
        chars, says = DEFECTS[kind]
        index = draw(st.integers(0, len(attributes) - 1))
        oid, value = attributes[index]
        at = draw(st.integers(0, len(value)))
        attributes[index] = (oid, value[:at] + draw(chars) + value[at:])
    elif kind == "too long":
        bounds = {
            NameOID.COMMON_NAME: 64,
            NameOID.ORGANIZATION_NAME: 64,
            NameOID.ORGANIZATIONAL_UNIT_NAME: 64,
            NameOID.LOCALITY_NAME: 128,
            NameOID.STATE_OR_PROVINCE_NAME: 128,
        }
        choices = [i for i, (oid, _) in enumerate(attributes) if oid in bounds]
        index = draw(st.sampled_from(choices))
        oid, _ = attributes[index]
        size = draw(st.integers(bounds[oid] + 1, bounds[oid] + 300))
        # ASCII letters: NFC leaves their length alone (Hangul jamo, say, would compose).
        ascii_letters = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
        attributes[index] = (oid, draw(st.text(ascii_letters, min_size=size, max_size=size)))
        says = f"at most {bounds[oid]} are allowed"
    elif kind == "country":
        attributes[:] = [a for a in attributes if a[0] != NameOID.COUNTRY_NAME]
        case["profile"] = "server"
        case["dns"] = case["dns"] or ["www.example.test"]
        attributes[:] = [(NameOID.COMMON_NAME, "web server")]
        attributes.append(
            (NameOID.COUNTRY_NAME, draw(st.sampled_from(["USA", "1A", "D", "Ü1", "Deutschland"])))
        )
        says = "two-letter country code"
    elif kind == "foreign email":
        local = draw(st.from_regex(r"\A[a-z]{1,10}\Z"))
        attributes.append((NameOID.EMAIL_ADDRESS, f"{local}@elsewhere.test"))
        says = "which is not yours"
    elif kind == "two CNs":
        cn = next(value for oid, value in attributes if oid == NameOID.COMMON_NAME)
        attributes.append((NameOID.COMMON_NAME, cn))
        says = "more than one common name"
    else:
        bad = draw(st.sampled_from(sorted(BAD_NAMES)))
        case["profile"] = "server"
        attributes[:] = [(NameOID.COMMON_NAME, "web server")]
        case["dns"] = [*draw(st.lists(hostnames(), max_size=2)), bad]
        case["extra"] = []
        says = BAD_NAMES[bad]
    case["says"] = says
    return case


@st.composite
def wild_case(draw) -> dict:
    """Anything: attributes of many kinds with arbitrary text, names of arbitrary labels."""
    kinds = [
        NameOID.COMMON_NAME,
        NameOID.ORGANIZATION_NAME,
        NameOID.ORGANIZATIONAL_UNIT_NAME,
        NameOID.LOCALITY_NAME,
        NameOID.STATE_OR_PROVINCE_NAME,
        NameOID.COUNTRY_NAME,
        NameOID.EMAIL_ADDRESS,
        NameOID.SERIAL_NUMBER,
        NameOID.DOMAIN_COMPONENT,
    ]
    text = st.text(st.characters(exclude_categories=("Cs",)), min_size=0, max_size=80)
    attributes = draw(st.lists(st.tuples(st.sampled_from(kinds), text), max_size=5))
    attributes = [(oid, value) for oid, value in attributes if value]
    label = st.text(st.sampled_from("abcz09-_*.xnü"), min_size=1, max_size=12)
    dns = draw(st.lists(st.lists(label, min_size=1, max_size=4).map(".".join), max_size=3))
    return {
        "profile": draw(st.sampled_from(["server", "user", "agent"])),
        "attributes": attributes,
        "dns": dns,
        "extra": [],
    }


KNOWN_CAUSES = re.compile(
    r"control character|invisible formatting|separator|private-use|unassigned|lone surrogate"
    r"|characters long|bytes in UTF-8|two-letter country|more than one|is empty|not yours|hostname"
    r"|IDNA|single-label|wildcard|label|non-ASCII|at least one hostname"
)


# --- the properties -------------------------------------------------------------------


def _enroll(client, case) -> tuple[object, str]:
    csr = hostile.raw_csr(case["attributes"], dns=case["dns"], utf8_only=True)
    data = {"csr": csr, "requester_email": REQUESTER}
    if case["extra"]:
        data["extra_hostnames"] = "\n".join(case["extra"])
    response = client.post(f"/enroll/{case['profile']}/", data)
    assert response.status_code != 500
    return response, html.unescape(response.content.decode())


def _rows():
    return CertificateRequest.objects.count(), AuditEvent.objects.count()


def _approve_and_lint(agent) -> None:
    waiting = (CertificateRequest.Status.PENDING, CertificateRequest.Status.AWAITING_EMAIL)
    req = confirmed(CertificateRequest.objects.filter(status__in=waiting).get())
    cert = services.approve_request(req, agent=agent)
    assert findings(cert.pem) == [], (req.subject, cert.sans)
    # The subject was rebuilt: every attribute the certificate carries is one the profile takes.
    shorts = {short for short, _ in pki.ATTRIBUTES.items()}
    for attribute in cert.x509.subject:
        assert attribute.rfc4514_attribute_name in shorts


@pytest.fixture
def setup(db, ca, agent, settings, empty_cache):
    # pkilint (like browsers) wants URLs with a dotted host name; "testserver" is not one.
    settings.SITE_URL = "http://ca.example.test"


@pytest.mark.usefixtures("setup")
@hypothesis_settings(max_examples=VALID_CASES, **PROPERTY_SETTINGS)
@given(case=valid_case())
def test_a_valid_subject_is_accepted_and_lints_clean(client, agent, case):
    """A subject and names within the profile's policy are accepted, and the certificate has
    no pkilint RFC 5280 finding at WARNING or above."""
    response, text = _enroll(client, case)
    assert response.status_code == 302, text[-2000:]
    _approve_and_lint(agent)


@pytest.mark.usefixtures("setup")
@hypothesis_settings(max_examples=DEFECT_CASES, **PROPERTY_SETTINGS)
@given(case=defect_case())
def test_one_defect_is_refused_naming_it_and_storing_nothing(client, case):
    """A valid case with one defect injected gets a 4xx page naming that defect, never a
    500, and no request or audit row is stored."""
    before = _rows()
    response, text = _enroll(client, case)
    assert 400 <= response.status_code < 500
    assert case["says"] in text
    assert "Traceback" not in text and "PublicKey" not in text
    assert _rows() == before


@pytest.mark.usefixtures("setup")
@hypothesis_settings(max_examples=WILD_CASES, **PROPERTY_SETTINGS)
@given(case=wild_case())
def test_anything_is_either_issued_clean_or_refused_with_a_known_cause(client, agent, case):
    """Arbitrary attributes and labels: accepted ones lint clean; refused ones get a 4xx page
    with a known cause and store nothing."""
    before = _rows()
    response, text = _enroll(client, case)
    if response.status_code == 302:
        _approve_and_lint(agent)
        return
    assert 400 <= response.status_code < 500
    errors = response.context["form"].errors.as_data()
    messages = [str(m) for error_list in errors.values() for e in error_list for m in e]
    assert messages and all(KNOWN_CAUSES.search(m) for m in messages), messages
    assert _rows() == before
