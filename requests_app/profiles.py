"""Enrollment profiles: what each issues and how it is delivered.

Defined here, overridable field by field (or extended with new profiles) through
`settings.CA_PROFILES`, e.g. `{"server": {"validity_days": 90, "max_validity_days": 90}}`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

from . import pki


class ProfileError(ValueError):
    """A request does not fit its profile; the message is meant for a person, and field
    (when given) names the input it is about: "csr", "extra_hostnames", "sans"."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Profile:
    """One enrollment profile: what its certificates contain and how they are delivered."""

    name: str
    label: str
    description: str
    extended_key_usages: tuple[str, ...]
    validity_days: int
    max_validity_days: int
    #: "hostnames": at least one DNS name or IP (server); "requester_email": rfc822Name
    #: is the requester's email (user); "optional_email": the email if one is given.
    san_policy: str
    allow_ed25519: bool = False
    #: keyEncipherment (RSA) / keyAgreement (EC) besides digitalSignature.
    key_encipherment: bool = True
    #: Delivery backends that run automatically after approval (the delivery work reads it).
    auto_delivery: tuple[str, ...] = ()
    #: Dogtag profile IDs that map to this profile (certmonger's -T).
    dogtag_ids: tuple[str, ...] = ()
    #: Issue at once, without an agent (never for renewals).
    auto_approve: bool = False
    #: Issue a renewal at once when its CSR is signed by the key of the certificate it
    #: renews (valid, unrevoked, unexpired) and it names the same subject and SANs; audited
    #: as renewal_auto_approved. Off: every renewal waits for an agent (CVE-2021-20179).
    auto_approve_same_key_renewal: bool = False
    #: Proof of the mailbox: a request waits until its requester confirms the address with
    #: the code mailed to it, and only then reaches the agents (the certificate names it).
    confirm_email: bool = False
    enabled: bool = True
    #: Follow the CA/Browser Forum's Baseline Requirements: the TLS BRs for a serverAuth
    #: profile (domain-validated), the S/MIME BRs for an emailProtection profile
    #: (mailbox-validated). Their rules shape the certificate (subject, key usage, SKI,
    #: certificatePolicies) and the CA/B linter runs before issuance. Off by default: a
    #: private CA issues internal names (host.corp) that the public rules forbid.
    baseline_requirements: bool = False
    #: certificatePolicies OIDs (dotted). With baseline_requirements, the CA/B Forum's reserved
    #: OID of the profile's kind comes first unless one is listed (pki.CABF_POLICY_OIDS).
    policy_oids: tuple[str, ...] = ()
    #: The S/MIME generation under baseline_requirements: "multipurpose" (clientAuth allowed
    #: beside emailProtection) or "strict" (emailProtection only).
    smime_generation: str = "multipurpose"
    #: The subject attributes taken from a CSR (checked, rebuilt); the others are dropped.
    subject_attributes: tuple[str, ...] = ("CN", "O", "OU")
    #: Names such as localhost or intranet (no dot): refused unless this is True.
    allow_single_label_names: bool = False

    @property
    def takes_hostnames(self) -> bool:
        return self.san_policy == "hostnames"

    @property
    def cabf_kind(self) -> str | None:
        """Which Baseline Requirements could apply: "serverauth", "smime", or none."""
        if "serverAuth" in self.extended_key_usages:
            return "serverauth"
        if "emailProtection" in self.extended_key_usages:
            return "smime"
        return None

    @property
    def linters(self) -> tuple[str, ...]:
        """The pkilint linters its certificates must pass (pki.LINTERS): RFC 5280 always,
        and the CA/B Forum linter of its kind under the Baseline Requirements."""
        if not self.baseline_requirements:
            return ("rfc5280",)
        if self.cabf_kind == "serverauth":
            return ("rfc5280", "cabf-serverauth")
        return ("rfc5280", f"cabf-smime-mailbox-{self.smime_generation}")

    @property
    def certificate_policies(self) -> tuple[str, ...]:
        """The certificatePolicies OIDs its certificates carry (none: no extension)."""
        if not self.baseline_requirements:
            return self.policy_oids
        reserved = set(pki.CABF_POLICY_OIDS.values())
        if any(oid in reserved for oid in self.policy_oids):
            return self.policy_oids
        if self.cabf_kind == "serverauth":
            own = pki.CABF_POLICY_OIDS["serverauth-dv"]
        else:
            own = pki.CABF_POLICY_OIDS[f"smime-mailbox-{self.smime_generation}"]
        return (own, *self.policy_oids)


DEFAULT_PROFILES = {
    "server": Profile(
        name="server",
        label="TLS server certificate",
        description=(
            "For a web, mail or other TLS server. The certificate names the server's "
            "hostnames (DNS names or IP addresses) and is trusted for serverAuth."
        ),
        extended_key_usages=("serverAuth",),
        validity_days=198,
        max_validity_days=200,
        san_policy="hostnames",
        auto_delivery=(),
        dogtag_ids=("caServerCert", "caECServerCert"),
        subject_attributes=("CN", "O", "L", "ST", "C"),
    ),
    "user": Profile(
        name="user",
        label="Personal certificate",
        description=(
            "For a person: log in to web sites and VPNs (clientAuth) and sign or encrypt "
            "email (S/MIME). The certificate names your email address."
        ),
        extended_key_usages=("clientAuth", "emailProtection"),
        validity_days=365,
        max_validity_days=365,
        san_policy="requester_email",
        auto_delivery=("email_link",),
        dogtag_ids=("caUserCert", "caECUserCert"),
        confirm_email=True,
        subject_attributes=("CN", "O", "OU"),
    ),
    "agent": Profile(
        name="agent",
        label="Agent login certificate",
        description="For a Certificate Manager agent: a client certificate to log in with.",
        extended_key_usages=("clientAuth",),
        validity_days=365,
        max_validity_days=365,
        san_policy="optional_email",
        key_encipherment=False,
        auto_delivery=("email_link",),
        # The login certificate names the address, and agents would take it for the
        # colleague's own: the address is proved like a user certificate's.
        confirm_email=True,
        subject_attributes=("CN", "O", "OU"),
    ),
}

_FIELDS = {f.name for f in dataclasses.fields(Profile)}
SAN_POLICIES = ("hostnames", "requester_email", "optional_email")
SMIME_GENERATIONS = ("multipurpose", "strict")
_DOTTED_OID = re.compile(r"[0-2](\.(0|[1-9][0-9]*))+", re.ASCII)


@cache
def _profiles() -> dict[str, Profile]:
    profiles = dict(DEFAULT_PROFILES)
    for name, overrides in getattr(settings, "CA_PROFILES", {}).items():
        unknown = set(overrides) - _FIELDS
        if unknown:
            raise ProfileError(f"CA_PROFILES[{name!r}] has unknown fields: {sorted(unknown)}")
        tuples = {k: tuple(v) for k, v in overrides.items() if isinstance(v, list)}
        fields = {**overrides, **tuples, "name": name}
        try:
            if name in profiles:
                profiles[name] = dataclasses.replace(profiles[name], **fields)
            else:
                profiles[name] = Profile(**fields)
        except TypeError as exc:  # a new profile without all of its fields
            raise ProfileError(f"CA_PROFILES[{name!r}]: {exc}") from None
        _check_profile(profiles[name])
    return profiles


def _check_profile(profile: Profile) -> None:
    """Refuse a profile from CA_PROFILES that could not issue what it promises."""
    where = f"CA_PROFILES[{profile.name!r}]"
    if not 1 <= profile.validity_days <= profile.max_validity_days:
        raise ProfileError(
            f"{where}: validity_days ({profile.validity_days}) must be between 1 and "
            f"max_validity_days ({profile.max_validity_days})"
        )
    unknown = [eku for eku in profile.extended_key_usages if eku not in pki.EKU_OIDS]
    if unknown:
        raise ProfileError(
            f"{where}: unknown extended key usages {unknown}; use {', '.join(pki.EKU_OIDS)}"
        )
    unknown = [a for a in profile.subject_attributes if a not in pki.ATTRIBUTES]
    if unknown or not profile.subject_attributes:
        raise ProfileError(
            f"{where}: subject_attributes {list(profile.subject_attributes)} must name some of "
            f"{', '.join(pki.ATTRIBUTES)}"
        )
    if profile.san_policy not in SAN_POLICIES:
        raise ProfileError(
            f"{where}: san_policy {profile.san_policy!r} is not one of {', '.join(SAN_POLICIES)}"
        )
    for oid in profile.policy_oids:
        if not _DOTTED_OID.fullmatch(oid):
            raise ProfileError(f"{where}: policy OID {oid!r} is not a dotted OID such as 1.2.3.4")
    if profile.smime_generation not in SMIME_GENERATIONS:
        raise ProfileError(
            f"{where}: smime_generation {profile.smime_generation!r} is not one of "
            f"{', '.join(SMIME_GENERATIONS)}"
        )
    if profile.baseline_requirements:
        _check_baseline_profile(profile, where)


def _check_baseline_profile(profile: Profile, where: str) -> None:
    """Refuse baseline_requirements on a profile that the Baseline Requirements cannot cover."""
    ekus = set(profile.extended_key_usages)
    if profile.cabf_kind is None:
        raise ProfileError(
            f"{where}: baseline_requirements needs serverAuth (TLS) or emailProtection "
            "(S/MIME); the CA/B Forum has no Baseline Requirements for these certificates"
        )
    if {"serverAuth", "emailProtection"} <= ekus:
        raise ProfileError(
            f"{where}: under the Baseline Requirements one certificate is either for TLS "
            "servers (serverAuth) or for S/MIME (emailProtection), not both"
        )
    if profile.cabf_kind == "smime":
        if profile.san_policy != "requester_email":
            raise ProfileError(
                f"{where}: a mailbox-validated S/MIME profile names the requester's email "
                "(san_policy 'requester_email')"
            )
        if profile.smime_generation == "strict" and ekus != {"emailProtection"}:
            raise ProfileError(
                f"{where}: the strict S/MIME generation allows only emailProtection, "
                f"not {', '.join(sorted(ekus - {'emailProtection'}))}"
            )


@receiver(setting_changed)
def _forget_profiles(*, setting, **kwargs):
    if setting == "CA_PROFILES":
        _profiles.cache_clear()


def all_profiles(*, enabled_only: bool = True) -> list[Profile]:
    """The profiles, defaults first, with CA_PROFILES applied."""
    return [p for p in _profiles().values() if p.enabled or not enabled_only]


def dogtag_profile_ids() -> dict[str, Profile]:
    """Dogtag profile ID -> our enabled profile, for every Dogtag protocol we speak (the EE
    servlets and the REST API): the profiles' dogtag_ids, then DOGTAG_PROFILE_IDS, which adds,
    moves or drops IDs ({"caFooCert": "server", "caUserCert": None})."""
    enabled = {p.name: p for p in all_profiles()}
    mapping = {dogtag_id: p for p in enabled.values() for dogtag_id in p.dogtag_ids}
    for dogtag_id, name in getattr(settings, "DOGTAG_PROFILE_IDS", {}).items():
        if name in enabled:
            mapping[dogtag_id] = enabled[name]
        else:
            mapping.pop(dogtag_id, None)
    return mapping


def profile_names() -> list[str]:
    """The names of the enabled profiles."""
    return [p.name for p in all_profiles()]


def get_profile(name: str) -> Profile:
    """The enabled profile of that name, or ProfileError."""
    profile = _profiles().get(name)
    if profile is None or not profile.enabled:
        raise ProfileError(f"unknown profile {name!r}; choose one of {', '.join(profile_names())}")
    return profile


def check_validity(profile: Profile, validity_days: int | None) -> int:
    """The validity to issue with: the profile default, or the agent's choice within the maximum."""
    if validity_days is None:
        return profile.validity_days
    if not 1 <= validity_days <= profile.max_validity_days:
        raise ProfileError(
            f"validity must be between 1 and {profile.max_validity_days} days for the "
            f"{profile.name} profile, not {validity_days}"
        )
    return validity_days


def issued_subject(
    profile: Profile, subject: x509.Name, *, requester_email: str
) -> pki.CheckedSubject:
    """The subject a certificate under this profile gets from a CSR's (or a renewed
    certificate's) subject: rebuilt from the checked attributes, the others dropped."""
    try:
        return pki.check_subject(
            subject,
            accepted=profile.subject_attributes,
            requester_email=requester_email,
            hostname_cn=profile.takes_hostnames,
            allow_single_label=profile.allow_single_label_names,
        )
    except pki.PKIError as exc:
        raise ProfileError(str(exc), field="csr") from None


def typed_common_name(profile: Profile, name: str, *, what: str = "name") -> str:
    """A common name typed by the requester (the server-key form's name), checked."""
    try:
        values = pki.check_values([("CN", name)], accepted=profile.subject_attributes)
    except pki.InvalidName as exc:
        raise ProfileError(f"your {what}: {exc}", field="requester_name") from None
    return values[0][1]


def dropped_sans(profile: Profile, csr_sans: list[str], *, requester_email: str) -> list[str]:
    """The CSR's subjectAltName entries that the certificate will not name."""
    if profile.takes_hostnames:
        return [s for s in csr_sans if s.split(":", 1)[0] not in ("DNS", "IP")]
    mine = f"email:{requester_email}".lower()
    return [s for s in csr_sans if s.lower() != mine]


def dropped_from(
    profile: Profile, subject: x509.Name, csr_sans: list[str], *, requester_email: str
) -> list[str]:
    """Everything of a CSR that a certificate under this profile will not carry: subject
    attributes ("OU=Sales") and subjectAltName entries ("DNS:x"); ProfileError when the
    subject would be refused."""
    checked = issued_subject(profile, subject, requester_email=requester_email)
    return [*checked.dropped, *dropped_sans(profile, csr_sans, requester_email=requester_email)]


def requested_sans(
    profile: Profile,
    *,
    csr_sans: list[str],
    subject_cn: str | None,
    extra_hostnames: list[str],
    requester_email: str,
) -> list[str]:
    """The SANs (as "DNS:x", "IP:y", "email:z") a request asks for under this profile.

    subject_cn is the checked CN (issued_subject): for a hostname profile, a CN without
    blanks is a hostname already validated, and the certificate names it."""
    single = profile.allow_single_label_names
    if profile.takes_hostnames:
        names: list[str] = []
        candidates = []
        for text in csr_sans:
            if text.split(":", 1)[0] not in ("DNS", "IP"):
                continue
            try:
                candidates.append(
                    pki.san_to_text(pki.san_from_text(text, allow_single_label=single))
                )
            except pki.InvalidName as exc:
                raise ProfileError(f"The CSR's subjectAltName: {exc}", field="csr") from None
        for typed in extra_hostnames:
            if not typed.strip():
                continue
            try:
                candidates.append(pki.san_to_text(pki.parse_san(typed, allow_single_label=single)))
            except pki.InvalidName as exc:
                raise ProfileError(str(exc), field="extra_hostnames") from None
        if subject_cn and not any(ch.isspace() for ch in subject_cn):
            candidates.append(pki.san_to_text(pki.parse_san(subject_cn, allow_single_label=single)))
        for text in candidates:
            if text not in names:
                names.append(text)
        if not names:
            raise ProfileError(
                "A server certificate needs at least one hostname: put it in the CSR "
                "(CN or subjectAltName) or list it under extra hostnames.",
                field="extra_hostnames" if extra_hostnames else "csr",
            )
        return names
    if profile.san_policy == "requester_email":
        return [f"email:{requester_email}"]
    if profile.san_policy == "optional_email" and requester_email:
        return [f"email:{requester_email}"]
    return []


def check_sans(profile: Profile, sans: list[str], *, requester_email: str) -> list[pki.GeneralName]:
    """Check SANs (e.g. an agent's edits) against the profile rules; return GeneralNames."""
    names: list[pki.GeneralName] = []
    for text in sans:
        if not text.strip():
            continue
        try:
            name = pki.san_from_text(
                text.strip(), allow_single_label=profile.allow_single_label_names
            )
        except pki.InvalidName as exc:
            raise ProfileError(str(exc)) from None
        if name not in names:  # an edited list may repeat a name; a certificate should not
            names.append(name)
    if profile.takes_hostnames:
        if not names:
            raise ProfileError("a server certificate needs at least one DNS name or IP address")
        bad = [n for n in names if pki.san_kind(n) not in ("DNS", "IP")]
        if bad:
            raise ProfileError(
                f"a server certificate names only hostnames and IPs, not {pki.san_to_text(bad[0])}"
            )
    else:
        allowed = {requester_email.lower()} if requester_email else set()
        for n in names:
            if pki.san_kind(n) != "email" or n.value.lower() not in allowed:
                raise ProfileError(
                    f"a {profile.name} certificate names only the requester's email address, "
                    f"not {pki.san_to_text(n)}"
                )
        if profile.san_policy == "requester_email" and not names:
            raise ProfileError("a user certificate must name the requester's email address")
    return names


def certificate_options(
    profile: Profile, *, public_key: pki.PublicKey, subject: x509.Name, sans: list[pki.GeneralName]
) -> dict:
    """What the profile puts in a certificate, as keyword arguments of
    pki.certificate_builder: its subject, key usage, SKI, policies and EKUs."""
    options = {
        "subject": subject,
        "extended_key_usages": list(profile.extended_key_usages),
        "key_encipherment": profile.key_encipherment,
        "policy_oids": profile.certificate_policies,
    }
    if not profile.baseline_requirements:
        return options
    kind = profile.cabf_kind
    emails = [n.value for n in sans if pki.san_kind(n) == "email"]
    options["subject"] = pki.baseline_subject(kind=kind, email=emails[0] if emails else None)
    options["key_usage"] = pki.baseline_key_usage(public_key, kind=kind)
    # TLS BR 7.1.2.7.6: no subjectKeyIdentifier in subscriber certificates (NOT RECOMMENDED);
    # the S/MIME BRs follow RFC 5280 (SHOULD be present).
    options["subject_key_identifier"] = kind != "serverauth"
    return options
