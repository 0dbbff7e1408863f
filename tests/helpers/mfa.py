"""Agents' second factor in tests: a session that passed it, TOTP devices and their codes."""

from __future__ import annotations

import time

from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

from requests_app import agent_auth


def login_verified(client, user, *, method: str = "totp"):
    """Log the test client in as `user` with a session that passed the second factor (as
    force_login skips the password, this skips the code; tests of the factor itself use the
    real pages)."""
    client.force_login(user)
    session = client.session
    session[agent_auth.SESSION_KEY] = {"user": user.pk, "method": method}
    session.save()
    return client


def add_totp_device(user, *, name: str = "Phone") -> TOTPDevice:
    """A confirmed TOTP device for the user."""
    return TOTPDevice.objects.create(user=user, name=name, confirmed=True)


def totp_code(device: TOTPDevice, *, step_offset: int = 0) -> str:
    """The code the device's app shows now (or `step_offset` steps from now)."""
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time() + step_offset * device.step
    return f"{totp.token():0{device.digits}d}"


def next_totp_code(device: TOTPDevice) -> str:
    """A code the device accepts next: the current step's, or, when that one was used
    already, the next step's (inside the device's tolerance of one step)."""
    device.refresh_from_db()
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    offset = 1 if device.last_t >= totp.t() else 0
    return totp_code(device, step_offset=offset)
