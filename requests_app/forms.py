"""Forms of the end-entity and agent pages. They parse input; the services decide."""

from __future__ import annotations

import re

from django import forms
from django.contrib.auth.password_validation import CommonPasswordValidator
from django.template.defaultfilters import filesizeformat

from . import pki
from .models import (
    CertificateRequest,
    format_public_id,
    is_public_id,
    normalize_public_id,
)
from .profiles import Profile, all_profiles, get_profile
from .validators import validate_recipient_email

MAX_CSR_BYTES = pki.MAX_CSR_BYTES
_SEPARATORS = re.compile(r"[\s,]+")
_SAN_KINDS = {"dns": "DNS", "ip": "IP", "email": "email", "uri": "URI"}


def split_names(text: str) -> list[str]:
    """Names one per line or separated by commas or spaces."""
    return [part for part in _SEPARATORS.split(text or "") if part]


# --- end entities -------------------------------------------------------------------


class EnrollmentForm(forms.Form):
    csr = forms.CharField(
        label="Certificate signing request (PEM)",
        required=False,
        widget=forms.Textarea(
            attrs={
                "rows": 12,
                "cols": 66,
                "spellcheck": "false",
                "placeholder": "-----BEGIN CERTIFICATE REQUEST-----\n...\n"
                "-----END CERTIFICATE REQUEST-----",
            }
        ),
        help_text="Paste the whole CSR, including the BEGIN and END lines.",
    )
    csr_file = forms.FileField(
        label="or upload the CSR file",
        required=False,
        help_text="A .csr or .req file, PEM or DER, at most 64 KiB.",
    )
    extra_hostnames = forms.CharField(
        label="Extra hostnames",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 66, "spellcheck": "false"}),
        help_text=(
            "Other DNS names or IP addresses the server answers to, one per line or "
            "separated by commas. The names in the CSR are included already."
        ),
    )
    requester_name = forms.CharField(label="Your name", max_length=200, required=False)
    requester_email = forms.EmailField(
        label="Your email address",
        max_length=254,
        validators=[validate_recipient_email],  # what delivery will accept, no more
        help_text="Where we tell you about the request.",
    )
    note = forms.CharField(
        label="Note to the agent",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 66}),
    )

    def __init__(self, *args, profile: Profile, **kwargs):
        super().__init__(*args, **kwargs)
        self.profile = profile
        if not profile.takes_hostnames:
            del self.fields["extra_hostnames"]
        if profile.san_policy == "requester_email":
            self.fields[
                "requester_email"
            ].help_text = (
                "Where we tell you about the request. The certificate will name this address."
            )

    def clean_csr_file(self):
        upload = self.cleaned_data.get("csr_file")
        # .size is counted by views.common.CappedUploadHandler, which never stores an
        # oversized file; nothing is read before this check.
        if upload and upload.size > MAX_CSR_BYTES:
            raise forms.ValidationError(
                f"The file is {filesizeformat(upload.size)}; a certificate request is at most "
                "64 KiB. Upload the .csr file itself, not a certificate bundle or an archive."
            )
        return upload

    def clean_extra_hostnames(self):
        return split_names(self.cleaned_data.get("extra_hostnames", ""))

    def clean(self):
        cleaned = super().clean()
        text, upload = cleaned.get("csr"), cleaned.get("csr_file")
        if "csr_file" in self.errors:
            return cleaned
        if text and upload:
            self.add_error("csr", "Paste the CSR or upload a file, not both.")
        elif upload:
            cleaned["csr_data"] = upload.read()
        elif text:
            cleaned["csr_data"] = text
        else:
            self.add_error("csr", "Paste your CSR here or upload the CSR file.")
        return cleaned

    @property
    def csr_field(self) -> str:
        """The field a CSR error belongs to: the one the CSR came from."""
        return "csr_file" if self.cleaned_data.get("csr_file") else "csr"


class ServerKeyEnrollmentForm(forms.Form):
    """Enrollment without a CSR: the portal makes the key and seals it under a passphrase."""

    requester_name = forms.CharField(
        label="Your name",
        max_length=pki.MAX_COMMON_NAME,
        help_text="The certificate names you by it, e.g. Ada Lovelace.",
    )
    requester_email = forms.EmailField(
        label="Your email address",
        max_length=254,
        validators=[validate_recipient_email],  # what delivery will accept, no more
        help_text="The certificate names this address, and we mail you the link to it.",
    )
    passphrase = forms.CharField(
        label="Passphrase",
        strip=False,
        min_length=pki.MIN_PASSPHRASE_LENGTH,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=(
            f"At least {pki.MIN_PASSPHRASE_LENGTH} characters; a few unrelated words work "
            "well. It protects your key here and in the file you download. Nobody can "
            "recover it for you."
        ),
    )
    passphrase_confirm = forms.CharField(
        label="Passphrase again",
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )
    note = forms.CharField(
        label="Note to the agent",
        required=False,
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 66}),
    )

    def clean_passphrase(self):
        passphrase = self.cleaned_data["passphrase"]
        try:
            CommonPasswordValidator().validate(passphrase)
        except forms.ValidationError:
            raise forms.ValidationError(
                "This passphrase is on a list of common passwords; choose another."
            ) from None
        return passphrase

    def clean(self):
        cleaned = super().clean()
        first, second = cleaned.get("passphrase"), cleaned.get("passphrase_confirm")
        if first and second is not None and first != second:
            self.add_error("passphrase_confirm", "The two passphrases differ; type them again.")
        return cleaned


class Pkcs12Form(forms.Form):
    """The request ID and passphrase that open a server-made key, and the PKCS#12 flavour to
    pack it in. The serial number is public; the request ID is known only to the requester
    (their page and their mail), so nobody else reaches the passphrase check."""

    request_id = forms.CharField(
        label="Your request ID",
        max_length=64,
        widget=forms.TextInput(
            attrs={"placeholder": "ABCD-EFGH-JKMN-PQRS-TVWX", "size": 30, "autocomplete": "off"}
        ),
        help_text="Given when you submitted the request; it is also in the mail with your link.",
    )
    passphrase = forms.CharField(
        label="Your passphrase",
        strip=False,
        max_length=1024,
        widget=forms.PasswordInput(attrs={"autocomplete": "current-password"}),
        help_text="The one you chose when you submitted the request.",
    )
    pkcs12_format = forms.ChoiceField(
        label="File format",
        choices=[
            (
                "modern",
                "Modern (AES-256): Windows 10 and 11, Firefox, Chrome, Edge, Linux",
            ),
            (
                "compatible",
                "Compatible (3DES): macOS and iOS, older Windows, Android and Java",
            ),
        ],
        initial="modern",
        widget=forms.RadioSelect,
    )

    def __init__(self, *args, user_agent: str = "", request_id: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        # Apple's Keychain has refused the AES format with a misleading "wrong password".
        if any(apple in user_agent for apple in ("Macintosh", "iPhone", "iPad")):
            self.fields["pkcs12_format"].initial = "compatible"
        if is_public_id(request_id):  # from the request page's or the mailed link's URL
            self.fields["request_id"].initial = format_public_id(normalize_public_id(request_id))

    def clean_request_id(self):
        value = self.cleaned_data["request_id"]
        if not is_public_id(value):
            raise forms.ValidationError(
                "A request ID has 20 letters and digits, like ABCD-EFGH-JKMN-PQRS-TVWX."
            )
        return normalize_public_id(value)


class EmailConfirmationForm(forms.Form):
    """The code mailed to the requester, typed (or filled in from the mailed link)."""

    code = forms.CharField(
        label="Code from the message",
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "placeholder": "XXXX-XXXX-XXXX-XXXX",
                "size": 24,
                "autocomplete": "one-time-code",
                "spellcheck": "false",
            }
        ),
        help_text="Capitals or not, with or without the hyphens.",
    )

    def __init__(self, *args, from_link: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        if from_link:  # the code is in the link; the page only asks to press Confirm
            self.fields["code"].widget = forms.HiddenInput()


class RequestLookupForm(forms.Form):
    request_id = forms.CharField(
        label="Request ID",
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "ABCD-EFGH-JKMN-PQRS-TVWX", "size": 30}),
    )

    def clean_request_id(self):
        value = self.cleaned_data["request_id"]
        if not is_public_id(value):
            raise forms.ValidationError(
                "A request ID has 20 letters and digits, like ABCD-EFGH-JKMN-PQRS-TVWX."
            )
        return value


class CertificateLookupForm(forms.Form):
    serial = forms.CharField(
        label="Serial number",
        max_length=200,
        help_text=(
            "As shown when it was issued (3A:F2:...), or as openssl prints it (serial=3AF2...), "
            "or 0x3AF2...; digits only are tried as hexadecimal and as decimal (dec:1234 "
            "for decimal only)."
        ),
        widget=forms.TextInput(
            attrs={"placeholder": "3A:F2:...", "size": 40, "autocomplete": "off"}
        ),
    )

    def clean_serial(self):
        return clean_serial_text(self.cleaned_data["serial"])


def clean_serial_text(value: str) -> str:
    """The serial as typed, when it can be one (pki.parse_serial's forms); else why not."""
    try:
        pki.parse_serial(value)
    except pki.SerialError as exc:
        raise forms.ValidationError(str(exc)) from None
    return value.strip()


# --- agents -------------------------------------------------------------------------


class RequestFilterForm(forms.Form):
    status = forms.ChoiceField(
        required=False, choices=[("", "any status"), *CertificateRequest.Status.choices]
    )
    profile = forms.ChoiceField(required=False)
    #: The queue's one search box (requests_app.queue_search); "find-q" as the old Find box.
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={
                "id": "find-q",
                "type": "search",
                "placeholder": "request ID, serial, email, name or DNS:host",
                "size": 36,
            }
        ),
    )
    field_order = ["q", "status", "profile"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [("", "any profile")] + [
            (p.name, p.label) for p in all_profiles(enabled_only=False)
        ]


class ExpiringFilterForm(forms.Form):
    """The agents' Expiring page: the window, a profile, a search."""

    within = forms.TypedChoiceField(
        label="Expiring within",
        required=False,
        coerce=int,
        empty_value=30,
        choices=[(str(days), f"{days} days") for days in (7, 30, 90)],
    )
    profile = forms.ChoiceField(required=False)
    q = forms.CharField(
        label="Search",
        required=False,
        max_length=200,
        widget=forms.TextInput(
            attrs={"placeholder": "serial, email, start of CN, DNS:name", "size": 30}
        ),
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = [("", "any profile")] + [
            (p.name, p.label) for p in all_profiles(enabled_only=False)
        ]


def _san_text(entry: str) -> str:
    """One SAN as "DNS:x", "IP:y" or "email:z"; a bare hostname, IP or address is accepted."""
    kind, sep, value = entry.partition(":")
    if sep and kind.lower() in _SAN_KINDS:
        return f"{_SAN_KINDS[kind.lower()]}:{value.strip()}"
    if "@" in entry:
        return f"email:{entry}"
    try:
        return pki.san_to_text(pki.parse_san(entry))
    except pki.InvalidName as exc:
        raise forms.ValidationError(str(exc)) from None


class ApproveForm(forms.Form):
    validity_days = forms.IntegerField(
        label="Validity (days)",
        required=False,
        min_value=1,
        max_value=36500,
        help_text="Leave empty for the profile's default.",
    )
    sans = forms.CharField(
        label="Subject alternative names",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 50, "spellcheck": "false"}),
        help_text='One per line: "DNS:host.example.com", "IP:192.0.2.1" or "email:a@example.com".',
    )
    note = forms.CharField(label="Note", required=False, max_length=2000)

    def __init__(self, *args, request: CertificateRequest, **kwargs):
        kwargs.setdefault("initial", {"sans": "\n".join(request.requested_sans)})
        kwargs.setdefault("auto_id", "approve_%s")  # three forms share the details page
        super().__init__(*args, **kwargs)
        self.request_obj = request

    def clean_sans(self) -> list[str] | None:
        """The SANs to issue with, or None when the agent left the requested ones as they are."""
        if "sans" not in self.data:
            return None
        entries = [line.strip() for line in re.split(r"[\r\n,]+", self.data["sans"])]
        names = list(dict.fromkeys(_san_text(entry) for entry in entries if entry))
        return None if names == self.request_obj.requested_sans else names


class RejectForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=2000,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 50}),
        help_text="Shown to the requester.",
        error_messages={"required": "A reason is required to reject a request."},
    )

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "reject_%s")
        super().__init__(*args, **kwargs)


class CancelForm(forms.Form):
    note = forms.CharField(label="Note", required=False, max_length=2000)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("auto_id", "cancel_%s")
        super().__init__(*args, **kwargs)


# --- an agent's own agent certificate -------------------------------------------------


class AgentCertificateCsrForm(EnrollmentForm):
    """An agent's CSR for their own agent certificate: name and email come from the account."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, profile=get_profile("agent"), **kwargs)
        del self.fields["requester_name"]
        del self.fields["requester_email"]


class AgentCertificateKeyForm(ServerKeyEnrollmentForm):
    """An agent's own agent certificate with a key made by the portal, under a passphrase."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.fields["requester_name"]
        del self.fields["requester_email"]


class RenewalForm(EnrollmentForm):
    """A renewal's CSR (a new key, or the same one) and a note: the profile, subject, names
    and requester are the renewed certificate's."""

    def __init__(self, *args, profile: Profile, **kwargs):
        super().__init__(*args, profile=profile, **kwargs)
        for name in ("extra_hostnames", "requester_name", "requester_email"):
            self.fields.pop(name, None)
        self.fields["csr"].help_text = (
            "Paste the whole CSR, including the BEGIN and END lines. It may be signed by the "
            "certificate's own key or a new one; it may leave names out, not add any."
        )


class RenewalServerKeyForm(ServerKeyEnrollmentForm):
    """A renewal with a key made here: only the new passphrase (and a note)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name in ("requester_name", "requester_email"):
            self.fields.pop(name, None)
