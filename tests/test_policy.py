"""Issue 12, part A: what the CA accepts from a CSR. Each defect the issue lists, through each
surface that accepts CSRs (the web form, `submit_request`, Dogtag's profileSubmit, and the
server-key form for the subject the requester types there); the subject policy per profile;
the names; what the agent sees dropped; approvals that never crash; one waiting request per key."""

from __future__ import annotations

import base64
import html
import xml.etree.ElementTree as ET
from io import StringIO

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from requests_app import pki, services
from requests_app.models import AuditEvent, CertificateRequest
from tests.helpers import hostile
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed, submit_confirmed
from tests.helpers.mfa import login_verified

REQUESTER = "ada@example.test"
DOGTAG_IDS = {"server": "caServerCert", "user": "caUserCert"}


# --- the surfaces -------------------------------------------------------------------


def via_web(client, tmp_path, csr, profile, email):
    """The enrollment page: PEM pasted, DER uploaded."""
    data = {"requester_email": email, "requester_name": "Ada"}
    if isinstance(csr, bytes) and not csr.lstrip().startswith(b"-----"):
        data["csr_file"] = SimpleUploadedFile("req.der", csr)
    else:
        data["csr"] = csr.decode() if isinstance(csr, bytes) else csr
    response = client.post(f"/enroll/{profile}/", data)
    if response.status_code == 302:
        return True, ""
    assert 400 <= response.status_code < 500, response.status_code
    return False, html.unescape(response.content.decode())


def via_command(client, tmp_path, csr, profile, email):
    """manage.py submit_request --csr FILE."""
    path = tmp_path / "req.csr"
    path.write_bytes(csr.encode() if isinstance(csr, str) else csr)
    out = StringIO()
    try:
        call_command(
            "submit_request", "--profile", profile, "--csr", str(path), "--email", email, stdout=out
        )
    except CommandError as exc:
        return False, str(exc)
    return True, out.getvalue()


def via_dogtag(client, tmp_path, csr, profile, email):
    """Dogtag's profileSubmit: PEM as certmonger sends it, DER as bare base64."""
    if isinstance(csr, bytes) and not csr.lstrip().startswith(b"-----"):
        text = base64.b64encode(csr).decode()
    else:
        text = csr.decode() if isinstance(csr, bytes) else csr
    response = client.post(
        "/ca/ee/ca/profileSubmit",
        {
            "profileId": DOGTAG_IDS[profile],
            "cert_request_type": "pkcs10",
            "cert_request": text,
            "requestor_email": email,
            "xml": "true",
        },
    )
    assert response.status_code == 200
    root = ET.fromstring(response.content)  # noqa: S314 - our own reply, under test
    if root.findtext("Status") == "2":
        return True, ""
    assert root.findtext("Status") == "3", response.content  # "rejected": our policy
    return False, root.findtext("Error")


SURFACES = {"web": via_web, "command": via_command, "dogtag": via_dogtag}


def _rows() -> tuple[int, int]:
    return CertificateRequest.objects.count(), AuditEvent.objects.count()


@pytest.fixture
def nothing_stored(ca):
    """A check that no request and no audit row was written since the fixture ran."""
    before = _rows()
    return lambda: _rows() == before


# --- each defect, through each surface ----------------------------------------------


def _defects(tmp_path):
    """name -> (profile, email, a maker of the CSR, what the refusal must say, what it
    must not say)."""
    return {
        "NUL in CN": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("www.example.test\x00.evil.test"),
            "U+0000 (NUL)",
            None,
        ),
        "newline in CN": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("www.example.test\nApproved-By: agent"),
            "U+000A (a line break)",
            "\nApproved-By",
        ),
        "bidi override in CN": (
            "user",
            REQUESTER,
            lambda: hostile.cn_csr("Ada \u202egnp.exe"),
            "RIGHT-TO-LEFT OVERRIDE",
            "\u202e",
        ),
        "10 KiB CN": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("a" * 10240 + ".example.test"),
            "at most 64 are allowed",
            None,
        ),
        "someone else's emailAddress": (
            "user",
            REQUESTER,
            lambda: hostile.raw_csr(
                [(NameOID.COMMON_NAME, "Ada"), (NameOID.EMAIL_ADDRESS, "ceo@example.test")]
            ),
            "names the email address ceo@example.test, which is not yours",
            None,
        ),
        "xn--0 label": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("web server", dns=["xn--0.example.test"]),
            "'xn--0' is not a valid IDNA A-label",
            None,
        ),
        "emoji A-label": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("web server", dns=["xn--ls8h.example.test"]),
            "U+1F4A9",
            None,
        ),
        "raw UTF-8 dNSName": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("web server", dns=["bücher.example.test"]),
            "non-ASCII characters",
            None,
        ),
        "single-label name": (
            "server",
            REQUESTER,
            lambda: hostile.cn_csr("web server", dns=["localhost"]),
            "single-label name",
            None,
        ),
        "two CSRs in one PEM": (
            "server",
            REQUESTER,
            lambda: make_csr(cn="one.example.test") + make_csr(cn="two.example.test"),
            "holds 2 certificate signing requests",
            None,
        ),
        "DER whose PEM is over 64 KiB": (
            "server",
            REQUESTER,
            hostile.big_der_csr,
            "as PEM text; a certificate request is at most 64 KiB",
            None,
        ),
        "SHA-1 signature": (
            "server",
            REQUESTER,
            lambda: hostile.weak_hash_csr(tmp_path, "sha1"),
            "signed with SHA-1",
            "altered",
        ),
        "MD5 signature": (
            "server",
            REQUESTER,
            lambda: hostile.weak_hash_csr(tmp_path, "md5"),
            "signed with MD5",
            "altered",
        ),
        "explicit P-256 parameters": (
            "server",
            REQUESTER,
            lambda: hostile.explicit_curve_csr(tmp_path),
            "explicit curve parameters",
            None,
        ),
        "custom curve parameters": (
            "server",
            REQUESTER,
            lambda: hostile.explicit_curve_csr(tmp_path, custom=True),
            "explicit curve parameters",
            "cannot be read",
        ),
        "DSA key": (
            "server",
            REQUESTER,
            hostile.dsa_csr,
            "DSA keys are not accepted",
            "PublicKey",
        ),
    }


DEFECTS = [
    "NUL in CN",
    "newline in CN",
    "bidi override in CN",
    "10 KiB CN",
    "someone else's emailAddress",
    "xn--0 label",
    "emoji A-label",
    "raw UTF-8 dNSName",
    "single-label name",
    "two CSRs in one PEM",
    "DER whose PEM is over 64 KiB",
    "SHA-1 signature",
    "MD5 signature",
    "explicit P-256 parameters",
    "custom curve parameters",
    "DSA key",
]


@pytest.mark.usefixtures("empty_cache")
@pytest.mark.parametrize("surface", SURFACES)
@pytest.mark.parametrize("defect", DEFECTS)
def test_each_defect_is_refused_with_its_cause_on_every_surface(
    client, ca, tmp_path, defect, surface, nothing_stored
):
    """Every hostile CSR of the issue is refused on every surface, naming its cause in words
    a requester understands, and nothing is stored."""
    profile, email, make, says, never = _defects(tmp_path)[defect]
    ok, message = SURFACES[surface](client, tmp_path, make(), profile, email)
    assert not ok
    assert says in message
    if never:
        assert never not in message
    assert nothing_stored()


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Ada\nApproved-By: agent", "one line"),
        ("Ada \u202egnp.exe", "RIGHT-TO-LEFT OVERRIDE"),
        ("A" * 65, "at most 64 characters"),
        ("Ada\x00Lovelace", "Null characters are not allowed"),
        ("Ada\x1b[31m", "U+001B (ESC)"),
    ],
)
def test_the_server_key_form_checks_the_typed_name_like_a_subject(
    client, ca, name, says, nothing_stored
):
    """The server-key form's name becomes the CN: control characters, direction overrides
    and names over 64 characters are refused (never cut), and no key is made."""
    response = client.post(
        "/enroll/user/server-key/",
        {
            "requester_name": name,
            "requester_email": REQUESTER,
            "passphrase": "correct horse battery staple",
            "passphrase_confirm": "correct horse battery staple",
        },
    )
    assert response.status_code == 400
    assert says in html.unescape(response.content.decode())
    assert nothing_stored()


def test_the_server_key_form_issues_the_typed_name_nfc_normalised(ca, agent):
    """A decomposed name typed in the server-key form is issued NFC-normalised, as UTF8String."""
    req = services.submit_request_with_server_key(
        profile="user",
        passphrase="correct horse battery staple",
        requester_email=REQUESTER,
        requester_name="Ade\u0300le Lovelace",
    )
    cert = services.approve_request(confirmed(req), agent=agent).x509
    (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert (cn.value, cn._type) == ("Adèle Lovelace", _ASN1Type.UTF8String)


# --- the subject policy -------------------------------------------------------------


def test_the_subject_is_rebuilt_and_what_is_dropped_is_shown_before_approval(ca, agent, client):
    """A server CSR's OU, emailAddress and serialNumber are dropped and listed on the agent
    page; the certificate's subject is rebuilt (C upper-case PrintableString, the rest
    UTF8String, the conventional order), never copied from the CSR."""
    csr = hostile.raw_csr(
        [
            (NameOID.COMMON_NAME, "www.example.test"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Sales"),
            (NameOID.EMAIL_ADDRESS, REQUESTER),
            (NameOID.SERIAL_NUMBER, "42"),
            (NameOID.ORGANIZATION_NAME, "Example Ltd"),
            (NameOID.COUNTRY_NAME, "de"),
        ]
    )
    req = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    assert req.subject == "CN=www.example.test,O=Example Ltd,C=DE"
    login_verified(client, agent)
    page = html.unescape(client.get(req.get_agent_url()).content.decode())
    assert f"dropped from the CSR: OU=Sales, emailAddress={REQUESTER}, serialNumber=42" in page
    submitted = req.audit_events.get(action="request_submitted")
    assert submitted.details["dropped"] == [
        "OU=Sales",
        f"emailAddress={REQUESTER}",
        "serialNumber=42",
    ]
    cert = services.approve_request(req, agent=agent).x509
    assert [(a.oid, a.value, a._type) for a in cert.subject] == [
        (NameOID.COUNTRY_NAME, "DE", _ASN1Type.PrintableString),
        (NameOID.ORGANIZATION_NAME, "Example Ltd", _ASN1Type.UTF8String),
        (NameOID.COMMON_NAME, "www.example.test", _ASN1Type.UTF8String),
    ]


def test_a_user_csr_keeps_cn_o_ou_and_drops_other_sans(ca, agent):
    """A user certificate takes CN, O and OU; the CSR's own SANs are dropped and listed,
    and the certificate names only the requester's address."""
    key = pki.generate_private_key("p256")
    csr = hostile.raw_csr(
        [
            (NameOID.COMMON_NAME, "Ada Lovelace"),
            (NameOID.ORGANIZATIONAL_UNIT_NAME, "Engines"),
            (NameOID.LOCALITY_NAME, "London"),
        ],
        dns=["evil.example.test"],
        key=key,
    )
    req = submit_confirmed(profile="user", csr=csr, requester_email=REQUESTER)
    assert req.subject == "CN=Ada Lovelace,OU=Engines"
    submitted = req.audit_events.get(action="request_submitted")
    assert submitted.details["dropped"] == ["L=London", "DNS:evil.example.test"]
    cert = services.approve_request(req, agent=agent)
    assert cert.sans == [f"email:{REQUESTER}"]


def test_the_requesters_own_emailaddress_is_moved_not_refused(ca):
    """An emailAddress that is the requester's (any case) is dropped from the subject."""
    csr = hostile.raw_csr(
        [(NameOID.COMMON_NAME, "Ada"), (NameOID.EMAIL_ADDRESS, REQUESTER.upper())]
    )
    req = submit_confirmed(profile="user", csr=csr, requester_email=REQUESTER)
    assert req.subject == "CN=Ada"
    assert req.requested_sans == [f"email:{REQUESTER}"]


@pytest.mark.parametrize(
    ("attributes", "says"),
    [
        ([(NameOID.COUNTRY_NAME, "Deutschland")], "two-letter country code"),
        ([(NameOID.COUNTRY_NAME, "D1")], "two-letter country code"),
        ([(NameOID.ORGANIZATION_NAME, "x" * 65)], "at most 64 are allowed"),
        ([(NameOID.LOCALITY_NAME, "x" * 129)], "at most 128 are allowed"),
        ([(NameOID.COMMON_NAME, "名" * 22)], "66 bytes in UTF-8; at most 64 fit"),
        (
            [(NameOID.COMMON_NAME, "a.example.test"), (NameOID.COMMON_NAME, "b.example.test")],
            "more than one common name",
        ),
        ([(NameOID.COMMON_NAME, "   ")], "is empty"),
        ([(NameOID.ORGANIZATION_NAME, "Evil\u2066Corp")], "changes the direction"),
        ([(NameOID.ORGANIZATION_NAME, "Zero\u200bWidth")], "invisible formatting character"),
        ([(NameOID.ORGANIZATION_NAME, "C1\x85control")], "U+0085"),
        ([(NameOID.ORGANIZATIONAL_UNIT_NAME, "DEL\x7f")], "U+007F (DEL)"),
        ([(NameOID.COMMON_NAME, "intranet")], "single-label name"),
    ],
)
def test_subject_attributes_outside_the_policy_are_refused(ca, attributes, says, nothing_stored):
    """Bounds, country codes, repeated attributes, blanks, hidden characters (even in an
    attribute the profile drops) and single-label CNs are refused, naming the cause."""
    csr = hostile.raw_csr([*attributes], dns=["www.example.test"])
    with pytest.raises(services.InvalidRequest, match=None) as refused:
        submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    assert says in refused.value.message
    assert refused.value.field == "csr"
    assert nothing_stored()


def test_a_descriptive_server_cn_stays_a_label(ca):
    """A server CN with blanks is a label, not a hostname: kept, and not put in the SAN."""
    csr = hostile.cn_csr("Payroll web server", dns=["payroll.example.test"])
    req = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    assert req.subject == "CN=Payroll web server"
    assert req.requested_sans == ["DNS:payroll.example.test"]


def test_a_u_label_cn_becomes_the_a_label_in_subject_and_san(ca):
    """A server CN typed as a U-label is written as its A-label, in the CN and the SAN."""
    req = submit_confirmed(
        profile="server", csr=hostile.cn_csr("Bücher.example.test"), requester_email=REQUESTER
    )
    assert req.subject == "CN=xn--bcher-kva.example.test"
    assert req.requested_sans == ["DNS:xn--bcher-kva.example.test"]


# --- names --------------------------------------------------------------------------


def test_typed_u_labels_are_converted_and_typed_garbage_refused(client, ca, empty_cache):
    """Extra hostnames typed as U-labels become A-labels; an invalid one is refused on the
    extra hostnames field with the reason."""
    response = client.post(
        "/enroll/server/",
        {
            "csr": make_csr(cn="www.example.test"),
            "requester_email": REQUESTER,
            "extra_hostnames": "Bücher.example.test",
        },
    )
    assert response.status_code == 302
    assert CertificateRequest.objects.get().requested_sans == [
        "DNS:xn--bcher-kva.example.test",
        "DNS:www.example.test",
    ]
    response = client.post(
        "/enroll/server/",
        {
            "csr": make_csr(cn="www.example.test"),
            "requester_email": REQUESTER,
            "extra_hostnames": "💩.example.test",
        },
    )
    assert response.status_code == 400
    form = response.context["form"]
    assert "U+1F4A9" in form.errors["extra_hostnames"][0]


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("xn--0.example.test", "not a valid IDNA A-label"),
        ("xn--ls8h.example.test", "U+1F4A9"),
        ("ab--cd.example.test", "third and fourth places"),
        ("*.*.example.test", "wildcard may only be the whole left-most label"),
        ("w*.example.test", "wildcard may only be the whole left-most label"),
        ("*.test", "at least two labels"),
        ("intranet", "single-label"),
        ("host.example.123", "last label is numeric"),
        ("host.example.t1", "end with a letter"),
        ("under_score.example.test", "letters, digits and inner hyphens"),
        ("xn--bcher-kva\u3002example.test", "not a valid hostname"),
    ],
)
def test_names_are_idna2008_and_refusals_say_why(value, says):
    """Invalid A-labels, reserved hyphens, misplaced wildcards, single labels and bad TLDs
    are refused with the reason."""
    with pytest.raises(pki.InvalidName) as refused:
        pki.normalize_hostname(value)
    assert says in str(refused.value)


def test_single_label_names_need_the_profile_option(ca, settings):
    """localhost is refused by default and accepted when the profile allows single labels."""
    csr = hostile.cn_csr("web server", dns=["localhost"])
    with pytest.raises(services.InvalidRequest, match="single-label"):
        submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    settings.CA_PROFILES = {"server": {"allow_single_label_names": True}}
    req = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    assert req.requested_sans == ["DNS:localhost"]


def test_a_profile_with_an_unknown_subject_attribute_is_refused(settings):
    """CA_PROFILES naming an attribute the policy does not know is a configuration error."""
    from requests_app import profiles

    settings.CA_PROFILES = {"server": {"subject_attributes": ["CN", "emailAddress"]}}
    with pytest.raises(profiles.ProfileError, match="subject_attributes"):
        profiles.get_profile("server")


# --- approvals never crash ----------------------------------------------------------


def _stuck_request() -> CertificateRequest:
    """A request accepted before the stored-size rule: its PEM is over 64 KiB."""
    req = submit_confirmed(
        profile="server", csr=make_csr(cn="stuck.example.test"), requester_email=REQUESTER
    )
    big = pki.load_csr(hostile.big_der_csr()).public_bytes(serialization.Encoding.PEM)
    CertificateRequest.objects.filter(pk=req.pk).update(csr_pem=big.decode())
    req.refresh_from_db()
    return req


def test_approving_an_unsignable_request_answers_with_the_cause_not_500(ca, agent, client):
    """The agent's Approve on a request whose stored CSR cannot be signed shows the cause
    (400), issues nothing and leaves the request pending."""
    req = _stuck_request()
    login_verified(client, agent)
    response = client.post(reverse("agent:approve", args=[req.public_id]), {})
    assert response.status_code == 400
    assert "the stored CSR cannot be signed" in html.unescape(response.content.decode())
    req.refresh_from_db()
    assert req.status == CertificateRequest.Status.PENDING


def test_the_admin_action_reports_an_unsignable_request(ca, agent, client):
    """The admin's Approve action reports the cause as an error message."""
    req = _stuck_request()
    agent.is_superuser = True
    agent.save()
    login_verified(client, agent)
    response = client.post(
        reverse("admin:requests_app_certificaterequest_changelist"),
        {"action": "approve_selected", "_selected_action": [req.pk]},
        follow=True,
    )
    assert response.status_code == 200
    assert "the stored CSR cannot be signed" in html.unescape(response.content.decode())


def test_the_bulk_path_reports_and_skips_what_it_cannot_sign(ca):
    """approve_request --all-pending signs the good requests, reports the one it cannot sign
    by ID and cause, and ends without a traceback."""
    stuck = _stuck_request()
    good = submit_confirmed(
        profile="server", csr=make_csr(cn="good.example.test"), requester_email=REQUESTER
    )
    out = StringIO()
    call_command("approve_request", "--all-pending", stdout=out)
    text = out.getvalue()
    assert "Approved 1, refused 1 pending request." in text
    assert f"refused {stuck.display_id}: the stored CSR cannot be signed" in text
    good.refresh_from_db()
    assert good.status == CertificateRequest.Status.COMPLETE


# --- one waiting request per key and profile ----------------------------------------


@pytest.mark.usefixtures("empty_cache")
@pytest.mark.parametrize("surface", SURFACES)
def test_a_second_waiting_request_for_the_same_key_is_refused_with_the_first_id(
    client, ca, tmp_path, surface
):
    """The same key and profile again, while the first request waits: refused, naming the
    first request's ID; nothing new is stored."""
    csr = make_csr(cn="twice.example.test")
    first = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    ok, message = SURFACES[surface](client, tmp_path, csr, "server", REQUESTER)
    assert not ok
    assert first.display_id in message
    assert CertificateRequest.objects.count() == 1


def test_the_same_key_may_ask_again_once_decided_or_for_another_profile(ca, agent):
    """Only a waiting request blocks: after a rejection, or under another profile, the key
    may be submitted again."""
    key = pki.generate_private_key("p256")
    csr = make_csr(cn="again.example.test", key=key)
    first = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    submit_confirmed(profile="agent", csr=csr, requester_email=REQUESTER)
    services.reject_request(first, agent=agent, reason="wrong host")
    again = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    assert again.status == CertificateRequest.Status.PENDING


# --- requester text in terminals ----------------------------------------------------


def test_commands_print_control_characters_escaped(ca):
    """A row from before the policy with a forged line in its subject and name: list and
    show print it escaped, so no forged line reaches the operator's terminal."""
    req = submit_confirmed(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email=REQUESTER
    )
    CertificateRequest.objects.filter(pk=req.pk).update(
        subject="CN=www.example.test\nApproved-By: agent\u202e",
        requester_name="Ada\r\nStatus: complete",
    )
    for command in (["list_requests"], ["show_request", req.public_id]):
        out = StringIO()
        call_command(*command, stdout=out)
        text = out.getvalue()
        assert "\nApproved-By" not in text
        assert "\u202e" not in text
        assert "www.example.test\\nApproved-By: agent\\u202e" in text
    out = StringIO()
    call_command("show_request", req.public_id, stdout=out)
    assert "Ada\\r\\nStatus: complete" in out.getvalue()


def test_submit_request_prints_a_checked_subject(ca, tmp_path):
    """submit_request prints the subject the certificate will carry, not the CSR's."""
    path = tmp_path / "req.csr"
    path.write_text(
        hostile.raw_csr(
            [(NameOID.COMMON_NAME, "www.example.test"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "x")]
        )
    )
    out = StringIO()
    call_command(
        "submit_request",
        "--profile",
        "server",
        "--csr",
        str(path),
        "--email",
        REQUESTER,
        stdout=out,
    )
    assert "Submitted a server request for CN=www.example.test\n" in out.getvalue()


def test_the_agent_page_shows_hidden_characters_escaped(ca, agent, client):
    """An old row's subject with a line break or an override is shown escaped to agents."""
    req = submit_confirmed(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email=REQUESTER
    )
    CertificateRequest.objects.filter(pk=req.pk).update(subject="CN=a\u202eb\nc")
    login_verified(client, agent)
    for url in (req.get_agent_url(), reverse("agent:request_list")):
        page = client.get(url).content.decode()
        assert "CN=a\\u202eb\\nc" in page
        assert "\u202e" not in page


def test_escape_text_shows_what_it_hides():
    """escape_text writes controls, format characters and backslashes visibly."""
    assert pki.escape_text("a\x00b\nc\u202ed\\e\U000e0001") == "a\\x00b\\nc\\u202ed\\\\e\\U000e0001"


def test_the_admin_shows_what_the_profile_drops(ca, agent, client):
    """The admin's request page lists what the profile leaves out of the certificate."""
    csr = hostile.raw_csr(
        [(NameOID.COMMON_NAME, "www.example.test"), (NameOID.ORGANIZATIONAL_UNIT_NAME, "Ops")]
    )
    req = submit_confirmed(profile="server", csr=csr, requester_email=REQUESTER)
    agent.is_superuser = True
    agent.save()
    login_verified(client, agent)
    page = client.get(reverse("admin:requests_app_certificaterequest_change", args=[req.pk]))
    assert page.status_code == 200
    assert "OU=Ops" in html.unescape(page.content.decode())
