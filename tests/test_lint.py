"""Certificates that lint clean, and pre-issuance linting.

Profiles with `baseline_requirements` issue certificates that pkilint's CA/Browser Forum
linters (serverauth, S/MIME) pass without a finding at WARNING or above; every profile passes
RFC 5280. Before the CA key signs, the certificate is signed by a throwaway key and linted;
a finding at ERROR refuses the issuance on every path (approve, bulk, issue_certificate,
auto-approve, the agent page, the command), with an audit row, and nothing is signed or stored.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from requests_app import pki, profiles, services
from requests_app.keys.files import EncryptedFileBackend
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from requests_app.pki import linting as pki_lint
from tests.helpers.csrs import make_csr, openssl_csr
from tests.helpers.mailbox import submit_confirmed
from tests.helpers.mfa import login_verified

BIN = Path(sys.executable).parent
PUBLIC_BASE = "http://ca.example.com"  # a public name: the CA/B linters refuse internal ones
CUSTOM_POLICY = "1.3.6.1.4.1.55555.1.2"
Status = CertificateRequest.Status


def _ec_spec(directory: Path) -> str:
    params = directory / "p256.pem"
    subprocess.run(
        ["openssl", "ecparam", "-name", "prime256v1", "-out", str(params)],
        check=True,
        capture_output=True,
    )
    return f"ec:{params}"


def _key_spec(key: str, directory: Path) -> str:
    return "rsa:2048" if key == "rsa" else _ec_spec(directory)


@pytest.fixture
def public(settings):
    """Revocation URLs on a public name, and profiles that follow the Baseline Requirements."""
    settings.REVOCATION_BASE_URL = PUBLIC_BASE
    settings.CA_PROFILES = {
        "server": {"baseline_requirements": True, "policy_oids": [CUSTOM_POLICY]},
        "user": {"baseline_requirements": True},
    }
    return settings


def _findings(cert: x509.Certificate, linters, severity: str = "WARNING") -> list[str]:
    return [str(f) for f in pki.lint(cert, linters) if f.at_least(severity)]


def _cli(tool: str, cert: x509.Certificate, directory: Path, *args: str):
    """pkilint's own command-line linter on cert, reporting WARNING and worse."""
    path = directory / "lint-me.pem"
    path.write_text(pki.to_pem(cert))
    return subprocess.run(
        [str(BIN / tool), "lint", *args, "-s", "WARNING", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )


def _usage(cert: x509.Certificate) -> set[str]:
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    names = ("digital_signature", "key_encipherment", "key_agreement", "content_commitment")
    return {name for name in names if getattr(usage, name)}


def _policies(cert: x509.Certificate) -> list[str]:
    value = cert.extensions.get_extension_for_class(x509.CertificatePolicies).value
    return [p.policy_identifier.dotted_string for p in value]


# --- pkilint in process ------------------------------------------------------------------


def test_rfc5280_always_runs_beside_the_cabf_linter(settings):
    """Each profile runs pkilint's RFC 5280 linter, and the CA/B linter of its kind only
    under the Baseline Requirements (the CA/B linters leave out some RFC 5280 checks)."""
    from pkilint import report

    settings.CA_PROFILES = {
        "server": {"baseline_requirements": True},
        "user": {"baseline_requirements": True},
    }
    assert [p.linters for p in profiles.all_profiles()] == [
        ("rfc5280", "cabf-serverauth"),
        ("rfc5280", "cabf-smime-mailbox-multipurpose"),
        ("rfc5280",),
    ]
    rfc5280 = {v.code for v in report.get_included_validations(pki_lint.validator_for("rfc5280"))}
    serverauth = pki_lint.validator_for("cabf-serverauth")
    assert rfc5280 - {v.code for v in report.get_included_validations(serverauth)}


def test_superseded_rfc5280_findings_are_dropped_only_beside_serverauth():
    """A TLS subscriber certificate without SKI: RFC 5280 alone warns, beside the serverauth
    linter the warning is dropped as pkilint's serverauth linter drops it."""
    ca_key, ca_cert = pki.create_ca("CN=Lint Root,C=US", key_type="p256")
    cert = pki.issue_certificate(
        ca_key=ca_key,
        ca_cert=ca_cert,
        public_key=pki.generate_private_key("p256").public_key(),
        subject=x509.Name([]),
        sans=[x509.DNSName("www.example.com")],
        extended_key_usages=["serverAuth"],
        validity_days=30,
        subject_key_identifier=False,
    )
    assert "pkix.certificate_skid_end_entity_missing" in {
        f.code for f in pki.lint(cert, ["rfc5280"])
    }
    assert "pkix.certificate_skid_end_entity_missing" not in {
        f.code for f in pki.lint(cert, ["rfc5280", "cabf-serverauth"])
    }


def test_validators_and_throwaway_keys_are_made_once_per_process():
    """Building pkilint's validators and a throwaway key happens once per process."""
    for linter in pki.LINTERS:
        assert pki_lint.validator_for(linter) is pki_lint.validator_for(linter)
    key = pki_lint.throwaway_key("p256")
    assert pki_lint.throwaway_key("p256") is key
    assert pki.key_type_of(key) == "p256"
    assert pki.key_type_of(pki_lint.throwaway_key("rsa2048")) == "rsa2048"


def test_an_unknown_linter_is_refused():
    """A linter name pkilint does not have is a ValueError, not a silent pass."""
    key, cert = pki.create_ca("CN=Lint Root,C=US", key_type="p256")
    with pytest.raises(ValueError, match="unknown linter 'cabf-codesigning'"):
        pki.lint_certificate(cert, "cabf-codesigning")
    with pytest.raises(ValueError, match="unknown linter"):
        pki_lint.validator_for("cabf-smime-mailbox-bogus")


def test_lint_builder_signs_with_a_throwaway_key_and_finds_an_error():
    """A builder with an extension RFC 5280 forbids in an end-entity certificate is reported
    at ERROR; the linted certificate is signed by the throwaway key, not the CA's."""
    ca_key, ca_cert = pki.create_ca("CN=Lint Root,C=US", key_type="p256")
    leaf_key = pki.generate_private_key("p256")
    builder = pki.certificate_builder(
        ca_cert=ca_cert,
        public_key=leaf_key.public_key(),
        subject=pki.parse_dn("CN=www.example.com"),
        sans=[x509.DNSName("www.example.com")],
        extended_key_usages=["serverAuth"],
        validity_days=30,
    ).add_extension(x509.NameConstraints([x509.DNSName("example.com")], None), critical=True)
    linted, findings = pki.lint_builder(builder, key_type="p256", linters=["rfc5280"])
    assert [f.code for f in findings if f.at_least("ERROR")] == [
        "pkix.name_constraints_in_ee_certificate"
    ]
    with pytest.raises(InvalidSignature):
        linted.verify_directly_issued_by(ca_cert)
    throwaway = pki_lint.throwaway_key("p256").public_key()
    throwaway.verify(
        linted.signature, linted.tbs_certificate_bytes, ec.ECDSA(linted.signature_hash_algorithm)
    )


# --- Baseline Requirements profiles: clean under the CA/B linters -----------------------


@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_br_server_certificate_lints_clean(key, ca, agent, public, tmp_path):
    """A BR server certificate for public names: no finding at WARNING or above from the
    serverauth linter (in process and pkilint's CLI, which detects DV by the policy OID), a
    domain-validated shape (no subject, critical SAN, no SKI, digitalSignature only), the
    reserved DV OID then the configured one."""
    csr = openssl_csr(
        tmp_path,
        subject="/CN=www.example.com/O=Example/OU=Web",
        key_spec=_key_spec(key, tmp_path),
        sans="DNS:www.example.com,DNS:alt.example.com",
    )
    req = submit_confirmed(
        profile="server", csr=csr.read_bytes(), requester_email="ops@example.com"
    )
    cert = services.approve_request(req, agent=agent).x509
    prof = profiles.get_profile("server")
    assert prof.linters == ("rfc5280", "cabf-serverauth")
    assert _findings(cert, prof.linters) == []
    result = _cli("lint_cabf_serverauth_cert", cert, tmp_path, "-d")
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr

    assert len(cert.subject) == 0
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical
    assert set(san.value.get_values_for_type(x509.DNSName)) == {
        "www.example.com",
        "alt.example.com",
    }
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert _usage(cert) == {"digital_signature"}
    assert _policies(cert) == [pki.CABF_POLICY_OIDS["serverauth-dv"], CUSTOM_POLICY]
    aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert {d.access_location.value for d in aia} == {
        f"{PUBLIC_BASE}/ocsp",
        f"{PUBLIC_BASE}/ca/{ca.pk}/ca.cer",
    }


@pytest.mark.parametrize("generation", ["multipurpose", "strict"])
@pytest.mark.parametrize("key", ["rsa", "ec"])
def test_br_user_certificate_lints_clean(key, generation, ca, agent, public, tmp_path):
    """A BR user certificate: no finding at WARNING or above from the S/MIME linter for a
    mailbox-validated certificate of the chosen generation; CN is the requester's address,
    key usage signs and encrypts, SKI present, the generation's reserved OID."""
    ekus = ["emailProtection"] if generation == "strict" else ["clientAuth", "emailProtection"]
    public.CA_PROFILES = {
        "user": {
            "baseline_requirements": True,
            "smime_generation": generation,
            "extended_key_usages": ekus,
        }
    }
    csr = openssl_csr(
        tmp_path, subject="/CN=Ada Lovelace/O=Example", key_spec=_key_spec(key, tmp_path)
    )
    req = submit_confirmed(profile="user", csr=csr.read_bytes(), requester_email="ada@example.com")
    cert = services.approve_request(req, agent=agent).x509
    prof = profiles.get_profile("user")
    assert prof.linters == ("rfc5280", f"cabf-smime-mailbox-{generation}")
    assert _findings(cert, prof.linters) == []
    result = _cli("lint_cabf_smime_cert", cert, tmp_path, "-d")
    assert (result.returncode, result.stdout.strip()) == (0, ""), result.stdout + result.stderr

    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ada@example.com")])
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(san) == [x509.RFC822Name("ada@example.com")]
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    encipher = "key_encipherment" if key == "rsa" else "key_agreement"
    assert _usage(cert) == {"digital_signature", encipher}
    assert _policies(cert) == [pki.CABF_POLICY_OIDS[f"smime-mailbox-{generation}"]]
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    if generation == "strict":
        assert list(eku) == [ExtendedKeyUsageOID.EMAIL_PROTECTION]


def test_br_user_with_an_address_too_long_for_a_cn_has_no_subject(ca, agent, public, tmp_path):
    """An address longer than a CN may be (64) leaves the subject empty, the SAN critical,
    and the certificate still lints clean."""
    email = f"{'a' * 60}@example.com"
    req = submit_confirmed(profile="user", csr=make_csr(cn="Ada"), requester_email=email)
    cert = services.approve_request(req, agent=agent).x509
    assert len(cert.subject) == 0
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).critical
    assert _findings(cert, profiles.get_profile("user").linters) == []


@pytest.mark.parametrize("key", ["rsa", "ec"])
@pytest.mark.parametrize("profile", ["server", "user", "agent"])
def test_without_br_every_profile_is_rfc5280_clean(profile, key, ca, agent, tmp_path):
    """Without baseline_requirements, each profile's certificate has no RFC 5280 finding at
    WARNING or above, and keeps its own shape (the CSR's CN, SKI, no policies)."""
    subjects = {"server": "/CN=www.example.test", "user": "/CN=Ada", "agent": "/CN=agent1"}
    csr = openssl_csr(tmp_path, subject=subjects[profile], key_spec=_key_spec(key, tmp_path))
    req = submit_confirmed(
        profile=profile, csr=csr.read_bytes(), requester_email="ada@example.test"
    )
    cert = services.approve_request(req, agent=agent).x509
    assert profiles.get_profile(profile).linters == ("rfc5280",)
    assert _findings(cert, ["rfc5280"]) == []
    cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.CertificatePolicies)


def test_a_policy_oid_without_br_is_carried_alone(ca, agent, settings):
    """policy_oids work without baseline_requirements too, without a CA/B reserved OID."""
    settings.CA_PROFILES = {"server": {"policy_oids": [CUSTOM_POLICY]}}
    req = submit_confirmed(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="o@example.test"
    )
    assert _policies(services.approve_request(req, agent=agent).x509) == [CUSTOM_POLICY]


def test_a_listed_reserved_oid_replaces_the_default(ca, agent, public):
    """An administrator who lists a CA/B reserved OID (OV) gets it instead of DV."""
    public.CA_PROFILES = {
        "server": {
            "baseline_requirements": True,
            "policy_oids": [pki.CABF_POLICY_OIDS["serverauth-ov"], CUSTOM_POLICY],
        }
    }
    prof = profiles.get_profile("server")
    assert prof.certificate_policies == ("2.23.140.1.2.2", CUSTOM_POLICY)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"agent": {"baseline_requirements": True}}, "needs serverAuth .* or emailProtection"),
        (
            {"user": {"baseline_requirements": True, "smime_generation": "strict"}},
            "strict S/MIME generation allows only emailProtection, not clientAuth",
        ),
        ({"user": {"smime_generation": "legacy"}}, "smime_generation 'legacy' is not one of"),
        ({"server": {"policy_oids": ["2.23.140.1.x"]}}, "policy OID '2.23.140.1.x' is not"),
        ({"server": {"policy_oids": ["4.1"]}}, "policy OID '4.1' is not"),
        (
            {
                "server": {
                    "baseline_requirements": True,
                    "extended_key_usages": ["serverAuth", "emailProtection"],
                }
            },
            "either for TLS servers .* or for S/MIME",
        ),
        (
            {"user": {"baseline_requirements": True, "san_policy": "optional_email"}},
            "names the requester's email",
        ),
    ],
)
def test_profiles_that_cannot_follow_the_brs_are_refused(settings, overrides, message):
    """A CA_PROFILES entry that could not issue what the Baseline Requirements allow is
    refused when profiles load, naming the problem."""
    settings.CA_PROFILES = overrides
    with pytest.raises(profiles.ProfileError, match=message):
        profiles.all_profiles()


# --- pre-issuance linting refuses ------------------------------------------------------


@pytest.fixture
def signatures(monkeypatch):
    """Every certificate the CA key signs, recorded."""
    signed: list[x509.Certificate] = []
    original = EncryptedFileBackend.sign_certificate

    def record(self, ca, builder):
        cert = original(self, ca, builder)
        signed.append(cert)
        return cert

    monkeypatch.setattr(EncryptedFileBackend, "sign_certificate", record)
    return signed


@pytest.fixture
def broken_builder(monkeypatch):
    """A certificate builder that adds nameConstraints (forbidden in an end-entity
    certificate, RFC 5280 4.2.1.10) when the subject's CN starts with "bad"."""
    original = pki.certificate_builder

    def builder(**options):
        result = original(**options)
        cn = pki.common_name(options["subject"]) or ""
        if cn.startswith("bad"):
            result = result.add_extension(
                x509.NameConstraints([x509.DNSName("example.test")], None), critical=True
            )
        return result

    monkeypatch.setattr(pki, "certificate_builder", builder)


def _submit(cn: str) -> CertificateRequest:
    return submit_confirmed(
        profile="server", csr=make_csr(cn=cn), requester_email="ops@example.test"
    )


def _lint_rows():
    return list(AuditEvent.objects.filter(action="issuance_refused_by_lint"))


def _assert_refused_and_recorded(req: CertificateRequest | None, *, code: str, actor=None):
    rows = _lint_rows()
    assert len(rows) == 1
    row = rows[0]
    assert row.request_id == (req.pk if req else None)
    assert row.actor == actor
    assert [f["code"] for f in row.details["findings"]] == [code]
    assert row.details["findings"][0]["severity"] == "ERROR"
    assert row.details["profile"] == "server"
    if req is not None:
        req.refresh_from_db()
        assert req.status == Status.PENDING
        assert req.certificate_id is None
    assert not AuditEvent.objects.filter(action="request_approved", request=req).exists()


def test_approval_of_a_certificate_that_fails_linting_is_refused(
    ca, agent, broken_builder, signatures, mailoutbox
):
    """The finding is in the message (a CAUnavailable, LintFailed); the CA key signed
    nothing, no certificate is stored, the request stays pending, an audit row says why."""
    req = _submit("bad.example.test")
    with pytest.raises(services.LintFailed) as refused:
        services.approve_request(req, agent=agent, ip="192.0.2.7")
    assert "pkix.name_constraints_in_ee_certificate" in refused.value.message
    assert "not signed" in refused.value.message
    assert isinstance(refused.value, services.CAUnavailable)
    assert [f.code for f in refused.value.findings] == ["pkix.name_constraints_in_ee_certificate"]
    assert signatures == []
    assert Certificate.objects.count() == 0
    _assert_refused_and_recorded(req, code="pkix.name_constraints_in_ee_certificate", actor=agent)
    assert _lint_rows()[0].ip == "192.0.2.7"


def test_with_preissuance_lint_off_the_same_certificate_is_signed(
    ca, agent, broken_builder, signatures, settings
):
    """PREISSUANCE_LINT=False turns the check off (and shows that it was the one refusing)."""
    settings.PREISSUANCE_LINT = False
    cert = services.approve_request(_submit("bad.example.test"), agent=agent)
    assert cert.x509.extensions.get_extension_for_class(x509.NameConstraints)
    assert len(signatures) == 1
    assert _lint_rows() == []


def test_the_signed_certificate_is_the_one_linted(ca, agent, signatures, monkeypatch):
    """What the CA key signs has the same to-be-signed bytes as what was linted."""
    linted: list[x509.Certificate] = []
    original = pki.lint_builder

    def record(builder, **options):
        cert, findings = original(builder, **options)
        linted.append(cert)
        return cert, findings

    monkeypatch.setattr(pki, "lint_builder", record)
    cert = services.approve_request(_submit("www.example.test"), agent=agent)
    assert len(linted) == len(signatures) == 1
    assert linted[0].tbs_certificate_bytes == cert.x509.tbs_certificate_bytes
    assert linted[0].signature != cert.x509.signature
    assert not pki.same_public_key(pki_lint.throwaway_key("p256"), ca.certificate.public_key())


def test_a_backend_signing_something_else_than_was_linted_is_refused(ca, agent, monkeypatch):
    """Should the key backend sign other content than was linted, nothing is stored."""
    original = EncryptedFileBackend.sign_certificate

    def swap(self, authority, builder):
        other = pki.certificate_builder(
            ca_cert=authority.certificate,
            public_key=pki.generate_private_key("p256").public_key(),
            subject=pki.parse_dn("CN=other.example.test"),
            sans=[x509.DNSName("other.example.test")],
            extended_key_usages=["serverAuth"],
            validity_days=1,
        )
        return original(self, authority, other)

    monkeypatch.setattr(EncryptedFileBackend, "sign_certificate", swap)
    req = _submit("www.example.test")
    with pytest.raises(services.CAUnavailable, match="differs from the one linted"):
        services.approve_request(req, agent=agent)
    assert Certificate.objects.count() == 0


def test_a_rsa_ca_lints_with_a_throwaway_rsa_key(db, agent, signatures):
    """A CA with an RSA key is linted with a throwaway RSA key of its size."""
    authority = services.create_ca("CN=RSA Root,C=US", key_type="rsa2048")
    assert isinstance(authority.certificate.public_key(), rsa.RSAPublicKey)
    cert = services.approve_request(_submit("www.example.test"), agent=agent)
    assert cert.ca == authority
    assert pki.key_type_of(pki_lint.throwaway_key("rsa2048")) == "rsa2048"
    assert len(signatures) == 1


def test_a_br_profile_for_an_internal_name_is_refused_with_the_cabf_finding(
    ca, agent, public, signatures
):
    """A profile following the Baseline Requirements for a private name (.test) is refused
    with the CA/B linter's finding, not signed."""
    req = _submit("www.example.test")
    with pytest.raises(services.LintFailed, match=r"cabf\.internal_domain_name"):
        services.approve_request(req, agent=agent)
    assert signatures == []
    assert Certificate.objects.count() == 0
    codes = {f["code"] for f in _lint_rows()[0].details["findings"]}
    assert codes == {"cabf.internal_domain_name"}


def test_bulk_approval_reports_and_skips_the_refused_request(ca, agent, broken_builder, signatures):
    """approve_all_pending issues the good requests and reports the one linting refused,
    which stays pending with its audit row."""
    good = _submit("good.example.test")
    bad = _submit("bad.example.test")
    later = _submit("later.example.test")
    result = services.approve_all_pending(agent=agent)
    assert [c.request.public_id for c in result.approved] == [good.public_id, later.public_id]
    assert [public_id for public_id, _ in result.refused] == [bad.public_id]
    assert "pkix.name_constraints_in_ee_certificate" in result.refused[0][1]
    assert len(signatures) == 2
    _assert_refused_and_recorded(bad, code="pkix.name_constraints_in_ee_certificate", actor=agent)


def test_approve_request_command_all_pending_goes_on(ca, broken_builder, capsys):
    """`approve_request --all-pending` reports the refused request with its finding and
    issues the others; one request refused is a CommandError naming the finding."""
    bad = _submit("bad.example.test")
    _submit("good.example.test")
    call_command("approve_request", all_pending=True)
    out = capsys.readouterr().out
    assert "Approved 1, refused 1 pending request." in out
    assert "pkix.name_constraints_in_ee_certificate" in out
    with pytest.raises(CommandError, match=r"pkix\.name_constraints_in_ee_certificate"):
        call_command("approve_request", bad.public_id)


def test_issue_certificate_refused_by_linting_stores_nothing_but_the_audit_row(
    ca, broken_builder, signatures
):
    """submit+approve in one step (administrators): refused, no request, no certificate, and
    the refusal's audit row outlives the rollback."""
    with pytest.raises(services.LintFailed):
        services.issue_certificate(
            profile="server", csr=make_csr(cn="bad.example.test"), requester_email="o@example.test"
        )
    assert CertificateRequest.objects.count() == 0
    assert Certificate.objects.count() == 0
    assert signatures == []
    _assert_refused_and_recorded(None, code="pkix.name_constraints_in_ee_certificate")


def test_auto_approve_refused_by_linting_leaves_the_request_queued(
    ca, broken_builder, settings, signatures
):
    """An auto-approve profile whose certificate fails linting keeps the request for an
    agent, with the refusal on record."""
    settings.CA_PROFILES = {"server": {"auto_approve": True}}
    req, cert = services.submit_enrollment(
        profile="server", csr=make_csr(cn="bad.example.test"), requester_email="o@example.test"
    )
    assert cert is None
    assert signatures == []
    _assert_refused_and_recorded(req, code="pkix.name_constraints_in_ee_certificate")


def test_agent_page_shows_the_finding_instead_of_a_500(client, ca, agent, broken_builder):
    """The agent's Approve answers with the finding as a message; the request stays pending."""
    login_verified(client, agent)
    req = _submit("bad.example.test")
    response = client.post(reverse("agent:approve", args=[req.public_id]), follow=True)
    assert response.status_code == 200
    assert "pkix.name_constraints_in_ee_certificate" in response.content.decode()
    _assert_refused_and_recorded(req, code="pkix.name_constraints_in_ee_certificate", actor=agent)


# --- names whose syntax the name policy decides -------------------------------------


def test_a_wildcard_name_is_issued_although_pkilints_rfc5280_linter_calls_it_invalid(ca, agent):
    """pkilint's RFC 5280 linter reports every wildcard as invalid syntax; the name policy
    decides wildcards (left-most label only), so that finding is dropped for them alone."""
    req = submit_confirmed(
        profile="server",
        csr=make_csr(cn="www.example.test", sans=[x509.DNSName("*.example.test")]),
        requester_email="ops@example.test",
    )
    cert = services.approve_request(req, agent=agent).x509
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "*.example.test" in names.get_values_for_type(x509.DNSName)
    assert [str(f) for f in pki.lint(cert, ["rfc5280"]) if f.at_least("WARNING")] == []


def test_the_exemption_covers_only_names_the_policy_decided():
    """Signed straight through pki (no name policy in front), a bad name keeps its finding
    even beside an exempt wildcard; a single-label name keeps it unless allowed."""
    from requests_app.pki import linting

    key = pki.generate_private_key("p256")

    def cert_for(*dns):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(x509.Name.from_rfc4514_string("CN=Linted"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
            .not_valid_after(dt.datetime(2026, 6, 1, tzinfo=dt.UTC))
            .add_extension(
                x509.SubjectAlternativeName([x509.DNSName(n) for n in dns]), critical=True
            )
        )
        return pki.sign(builder, key)

    def syntax_findings(cert, **options):
        return [
            f.message
            for f in pki.lint(cert, ["rfc5280"], **options)
            if f.code == linting.NAME_SYNTAX_FINDING
        ]

    assert syntax_findings(cert_for("*.example.test", "-bad.example.test")) == [
        'Invalid domain name syntax: "-bad.example.test"'
    ]
    assert syntax_findings(cert_for("*.*.example.test")) != []  # not a left-most wildcard only
    assert syntax_findings(cert_for("localhost")) == ['Invalid domain name syntax: "localhost"']
    assert syntax_findings(cert_for("localhost"), allow_single_label=True) == []


def test_a_profile_that_allows_single_label_names_issues_them(ca, agent, settings):
    settings.CA_PROFILES = {"server": {"allow_single_label_names": True}}
    req = submit_confirmed(
        profile="server",
        csr=make_csr(cn="intranet", sans=[x509.DNSName("intranet")]),
        requester_email="ops@example.test",
    )
    cert = services.approve_request(req, agent=agent).x509
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["intranet"]
