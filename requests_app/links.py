"""Signed, time-limited retrieval links, each naming one certificate."""

from __future__ import annotations

from django.conf import settings
from django.core import signing
from django.urls import reverse

from .models import Certificate

SALT = "ca-portal.retrieval-link"


class LinkError(Exception):
    """The link is expired, altered, or names no certificate; reveal nothing more."""


def retrieval_token(cert: Certificate) -> str:
    return signing.dumps({"ca": cert.ca_id, "serial": cert.serial}, salt=SALT, compress=True)


def retrieval_url(cert: Certificate) -> str:
    """The absolute link a requester is mailed (under SITE_URL)."""
    return f"{settings.SITE_URL}{reverse('retrieve', args=[retrieval_token(cert)])}"


def certificate_for_token(token: str) -> Certificate:
    """The certificate a token names, if the token is genuine and younger than the limit."""
    max_age = settings.RETRIEVAL_LINK_MAX_AGE_DAYS * 86400
    try:
        data = signing.loads(token, salt=SALT, max_age=max_age)
        return Certificate.objects.select_related("ca").get(ca_id=data["ca"], serial=data["serial"])
    except signing.SignatureExpired:
        raise LinkError("expired") from None
    except (signing.BadSignature, Certificate.DoesNotExist, KeyError, TypeError):
        raise LinkError("invalid") from None
