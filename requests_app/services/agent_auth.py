"""Agents' second factor: logins and their failures, TOTP devices, passkeys, recovery codes,
the enrolment link and the break-glass reset. Every change writes an audit row; device
changes also send `agent_second_factor_changed`.

Whether a *session* passed the second factor is not stored here but in the session
(requests_app.agent_auth); these functions check codes and record what happened."""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.crypto import constant_time_compare
from django.utils.encoding import force_bytes, force_str
from django.utils.http import base36_to_int, urlsafe_base64_decode, urlsafe_base64_encode
from django_otp import devices_for_user
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice
from django_otp_webauthn.models import WebAuthnCredential

from .. import signals
from ..models import APPROVE_PERMISSION
from .audit_log import audit
from .errors import InvalidRequest, ServiceError

User = AbstractBaseUser

#: How many recovery codes a user gets at a time.
RECOVERY_CODE_COUNT = 10
#: The name of the one StaticDevice that holds a user's recovery codes.
RECOVERY_DEVICE_NAME = "Recovery codes"

_CODE_JUNK = re.compile(r"[\s-]+")


class WrongSecondFactor(ServiceError):
    """The code is wrong, used already, or its device is throttled; nothing but the failure
    (audit row, device throttle) was written."""


class EnrolmentLinkInvalid(ServiceError):
    """The enrolment link is unknown, used, expired or for an inactive account."""


def needs_second_factor(user: User) -> bool:
    """Whether this account must pass a second factor on the agent surfaces: agents and
    staff (the admin), when AGENT_REQUIRE_MFA is on."""
    if not settings.AGENT_REQUIRE_MFA or not user.is_authenticated:
        return False
    return bool(user.is_staff or user.is_superuser or user.has_perm(APPROVE_PERMISSION))


def has_second_factor(user: User) -> bool:
    """Whether the user has a confirmed device to prove a second factor with (a TOTP
    device, a passkey, or recovery codes left)."""
    if TOTPDevice.objects.filter(user=user, confirmed=True).exists():
        return True
    if WebAuthnCredential.objects.filter(user=user, confirmed=True).exists():
        return True
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).exists()


@dataclass(frozen=True)
class DeviceRow:
    """One device as the security page lists it."""

    key: str  # "totp:<pk>" or "webauthn:<pk>": what remove_second_factor_device takes
    kind: str
    name: str
    created_at: object
    last_used_at: object


def second_factor_devices(user: User) -> list[DeviceRow]:
    """The user's confirmed TOTP devices and passkeys, oldest first."""
    rows = [
        DeviceRow(f"totp:{d.pk}", "Authenticator app (TOTP)", d.name, d.created_at, d.last_used_at)
        for d in TOTPDevice.objects.filter(user=user, confirmed=True).order_by("pk")
    ]
    rows += [
        DeviceRow(f"webauthn:{d.pk}", "Passkey", d.name, d.created_at, d.last_used_at)
        for d in WebAuthnCredential.objects.filter(user=user, confirmed=True).order_by("pk")
    ]
    return rows


def recovery_codes_left(user: User) -> int:
    return StaticToken.objects.filter(device__user=user, device__confirmed=True).count()


# --- logins ---------------------------------------------------------------------------


@transaction.atomic
def record_login(user: User, *, ip: str | None, method: str = "password") -> None:
    """Audit a successful first step of a login (the password, or a certificate)."""
    audit("agent_login", actor=user, ip=ip, method=method)


@transaction.atomic
def record_login_failure(username: str, *, ip: str | None, reason: str = "password") -> None:
    """Audit a refused login (no row names a password or a code)."""
    audit(
        "agent_login_failed",
        actor=None,
        actor_label="anonymous",
        ip=ip,
        username=username[:150],
        reason=reason,
    )


@transaction.atomic
def record_lockout(username: str | None, *, ip: str | None) -> None:
    """Audit that too many failures locked out a username or a client address."""
    audit(
        "agent_locked_out",
        actor=None,
        actor_label="anonymous",
        ip=ip,
        username=(username or "")[:150],
        minutes=settings.AGENT_LOGIN_LOCKOUT_MINUTES,
    )


@transaction.atomic
def record_logout(user: User, *, ip: str | None) -> None:
    audit("agent_logout", actor=user, ip=ip)


def verify_second_factor(user: User, code: str, *, ip: str | None) -> str:
    """Check a one-time code (TOTP) or a recovery code against the user's devices and
    return the method that accepted it ("totp" or "recovery"). A used code, a replayed TOTP
    code or a throttled device is refused with WrongSecondFactor; the failure is audited."""
    code = _CODE_JUNK.sub("", code or "").lower()
    with transaction.atomic():
        method = _match_code(user, code) if code else None
        if method is None:
            audit("agent_second_factor_failed", actor=user, ip=ip, method="code")
        else:
            details = {"codes_left": recovery_codes_left(user)} if method == "recovery" else {}
            audit("agent_second_factor_passed", actor=user, ip=ip, method=method, **details)
    # Raised after the commit, so the audit row and the device's throttle count stay.
    if method is None:
        raise WrongSecondFactor("That code is not right, or it has been used already.")
    return method


def _match_code(user: User, code: str) -> str | None:
    # Rows locked for the check (for_verify): two requests with one code cannot both pass.
    kind = TOTPDevice if code.isdigit() else StaticDevice
    for device in devices_for_user(user, confirmed=True, for_verify=True):
        if isinstance(device, kind) and device.verify_token(code):
            return "totp" if kind is TOTPDevice else "recovery"
    return None


def verify_passkey(user: User, *, helper, state: dict, data: dict, ip: str | None):
    """Check a WebAuthn assertion (django-otp-webauthn's helper verifies it and stores the
    new signature count) for the logged-in user; returns the passkey. A refusal is audited
    and re-raised as the library raised it."""
    try:
        with transaction.atomic():
            device = helper.authenticate_complete(user=user, state=state, data=data)
            if not device.confirmed or not device.user.is_active:
                raise WrongSecondFactor("This passkey is disabled.")
            audit(
                "agent_second_factor_passed",
                actor=user,
                ip=ip,
                method="webauthn",
                device=device.name,
            )
    except Exception as exc:
        _record_passkey_failure(user, ip=ip, reason=f"{type(exc).__name__}: {exc}")
        raise
    return device


def complete_passkey_registration(user: User, *, helper, state: dict, data: dict, ip: str | None):
    """Store a new passkey from a WebAuthn attestation (verified by django-otp-webauthn's
    helper); returns it. A refusal is audited and re-raised as the library raised it."""
    try:
        with transaction.atomic():
            device = helper.register_complete(user=user, state=state, data=data)
            audit("agent_device_enrolled", actor=user, ip=ip, kind="webauthn", device=device.name)
            signals.agent_second_factor_changed.send(
                sender=WebAuthnCredential, user=user, event="enrolled", actor=user
            )
    except Exception as exc:
        with transaction.atomic():
            audit(
                "agent_device_enrolment_failed",
                actor=user,
                ip=ip,
                kind="webauthn",
                reason=f"{type(exc).__name__}: {exc}"[:200],
            )
        raise
    return device


@transaction.atomic
def _record_passkey_failure(user: User, *, ip: str | None, reason: str) -> None:
    audit("agent_second_factor_failed", actor=user, ip=ip, method="webauthn", reason=reason[:200])


# --- devices --------------------------------------------------------------------------


def pending_totp_device(user: User, device_id) -> TOTPDevice | None:
    """The user's unconfirmed TOTP device with this id, if any (to show its secret again)."""
    if not str(device_id or "").isdigit():
        return None
    return TOTPDevice.objects.filter(user=user, pk=int(device_id), confirmed=False).first()


@transaction.atomic
def begin_totp_enrolment(user: User) -> TOTPDevice:
    """A new, unconfirmed TOTP device with a fresh secret (an earlier unconfirmed one is
    dropped). It counts for nothing until confirm_totp_device sees a code from it."""
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    return TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def confirm_totp_device(
    user: User, device_id: int, code: str, *, name: str, ip: str | None
) -> TOTPDevice:
    """Confirm the user's pending TOTP device with a code it computed; refused codes change
    nothing but the device's throttle."""
    code = _CODE_JUNK.sub("", code or "")
    name = (name or "").strip()[:64] or "Authenticator app"
    with transaction.atomic():
        device = (
            TOTPDevice.objects.select_for_update()
            .filter(user=user, pk=device_id, confirmed=False)
            .first()
        )
        if device is None:
            raise InvalidRequest("Start adding the authenticator app again.")
        ok = code.isdigit() and device.verify_token(code)
        if ok:
            device.confirmed = True
            device.name = name
            device.save(update_fields=["confirmed", "name"])
            audit("agent_device_enrolled", actor=user, ip=ip, kind="totp", device=name)
            signals.agent_second_factor_changed.send(
                sender=TOTPDevice, user=user, event="enrolled", actor=user
            )
    if not ok:
        raise WrongSecondFactor("That code is not right: check the app's clock and try again.")
    return device


@transaction.atomic
def remove_second_factor_device(user: User, key: str, *, ip: str | None) -> str:
    """Remove one of the user's own devices ("totp:<pk>" or "webauthn:<pk>"); returns its
    name."""
    kind, _, pk = (key or "").partition(":")
    model = {"totp": TOTPDevice, "webauthn": WebAuthnCredential}.get(kind)
    if model is None or not pk.isdigit():
        raise InvalidRequest("No such device.")
    device = model.objects.select_for_update().filter(user=user, pk=int(pk)).first()
    if device is None:
        raise InvalidRequest("No such device.")
    name = device.name
    device.delete()
    audit("agent_device_removed", actor=user, ip=ip, kind=kind, device=name)
    signals.agent_second_factor_changed.send(sender=model, user=user, event="removed", actor=user)
    return name


@transaction.atomic
def regenerate_recovery_codes(user: User, *, ip: str | None) -> list[str]:
    """New single-use recovery codes for the user; every earlier one stops working. The
    codes are returned once and shown once."""
    device, _ = StaticDevice.objects.select_for_update().get_or_create(
        user=user, name=RECOVERY_DEVICE_NAME, defaults={"confirmed": True}
    )
    StaticDevice.objects.filter(user=user).exclude(pk=device.pk).delete()
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(RECOVERY_CODE_COUNT)]
    StaticToken.objects.bulk_create(StaticToken(device=device, token=c) for c in codes)
    audit("agent_recovery_codes_generated", actor=user, ip=ip, count=len(codes))
    signals.agent_second_factor_changed.send(
        sender=StaticDevice, user=user, event="recovery_codes", actor=user
    )
    return codes


@transaction.atomic
def reset_agent_mfa(username: str, *, actor: User | None, reason: str = "") -> int:
    """Break glass: remove every second-factor device of a user (lost phone and codes), so
    that they enrol again after their password. Returns how many devices went."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise InvalidRequest(f"no user is named {username!r}", field="username")
    removed = 0
    for model in (TOTPDevice, WebAuthnCredential, StaticDevice):
        removed += model.objects.filter(user=user).delete()[1].get(model._meta.label, 0)
    audit(
        "agent_mfa_reset",
        actor=actor,
        username=user.get_username(),
        devices=removed,
        reason=reason[:500],
    )
    signals.agent_second_factor_changed.send(
        sender=type(user), user=user, event="reset", actor=actor
    )
    return removed


# --- the enrolment link -----------------------------------------------------------------


class _EnrolmentTokens(PasswordResetTokenGenerator):
    """Django's password-reset tokens under their own salt and lifetime: a token dies when
    the password changes or the user logs in (so it is single use), and after
    AGENT_ENROLMENT_LINK_HOURS."""

    key_salt = "ca-portal agent enrolment link"

    def check_token(self, user, token) -> bool:
        if not (user and token) or token.count("-") != 1:
            return False
        ts_b36, _ = token.split("-")
        try:
            ts = base36_to_int(ts_b36)
        except ValueError:
            return False
        if not any(
            constant_time_compare(self._make_token_with_timestamp(user, ts, secret), token)
            for secret in [self.secret, *self.secret_fallbacks]
        ):
            return False
        age = self._num_seconds(self._now()) - ts
        return 0 <= age <= settings.AGENT_ENROLMENT_LINK_HOURS * 3600


def enrolment_link_path(user: User) -> str:
    """The path of a one-time enrolment link for this user (set a password, then enrol a
    second factor)."""
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    return f"/accounts/enrol/{uid}/{_EnrolmentTokens().make_token(user)}/"


def enrolment_link_user(uidb64: str, token: str) -> User:
    """The user a valid enrolment link names, or EnrolmentLinkInvalid."""
    try:
        pk = int(force_str(urlsafe_base64_decode(uidb64)))
    except (TypeError, ValueError, OverflowError):
        pk = None
    user = get_user_model().objects.filter(pk=pk, is_active=True).first() if pk else None
    if user is None or not _EnrolmentTokens().check_token(user, token):
        raise EnrolmentLinkInvalid(
            "This enrolment link is not valid: it was used already, it expired, or it was "
            "mistyped. Ask an administrator for a new one."
        )
    return user


@transaction.atomic
def set_password_with_enrolment_link(
    uidb64: str, token: str, password: str, *, ip: str | None
) -> User:
    """Set the password of the user an enrolment link names; the link is spent by it."""
    user = enrolment_link_user(uidb64, token)
    user = type(user).objects.select_for_update().get(pk=user.pk)
    if not _EnrolmentTokens().check_token(user, token):  # re-checked under the lock
        raise EnrolmentLinkInvalid("This enrolment link was used already.")
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidRequest(" ".join(exc.messages), field="password") from None
    user.set_password(password)
    user.save(update_fields=["password"])
    audit("agent_enrolment_link_used", actor=user, ip=ip)
    return user
