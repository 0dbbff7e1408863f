"""Proof of the mailbox: the requester opens the mailed link (and presses Confirm), or types
the mailed code, and the request enters the agent queue."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from .. import services, throttle
from ..forms import EmailConfirmationForm
from ..httputil import client_ip
from ..models import CertificateRequest
from .common import find_request, not_found


@require_http_methods(["GET", "POST"])
def confirm_email(request: HttpRequest, public_id: str, code: str | None = None) -> HttpResponse:
    """GET shows the page (a link only fills in the code: mail scanners that open links
    must not confirm for the recipient); POST confirms."""
    req = find_request(public_id)
    if req is None:
        return not_found(
            request,
            "Request not found",
            "No request has that ID. Open the link in the message we mailed you, or check "
            "the ID against it.",
        )
    via = "link" if code is not None else "code"
    if request.method != "POST":
        form = EmailConfirmationForm(initial={"code": code or ""}, from_link=code is not None)
        return _page(request, req, form)
    form = EmailConfirmationForm(
        request.POST if code is None else {"code": code}, from_link=code is not None
    )
    if not form.is_valid():
        return _page(request, req, form, status=400)
    ip = client_ip(request)
    # Wrong codes are counted per request and per address: 80 random bits are not guessed,
    # and nobody gets to try.
    if not throttle.confirmation_guesses_left(req.public_id, ip):
        form.add_error(
            None,
            "Too many wrong codes were typed for this request or from your address. "
            "Wait an hour, then open the link in the message we mailed you.",
        )
        return _page(request, req, form, status=429)
    try:
        services.confirm_email(req, form.cleaned_data["code"], via=via, ip=ip)
    except services.WrongCode as exc:
        throttle.record_wrong_confirmation(req.public_id, ip)
        if code is not None:  # a link cut short or changed: offer to type the code instead
            typed = EmailConfirmationForm()
            return _page(request, req, typed, status=400, problem=exc.message, typed_form=True)
        form.add_error("code", exc.message)
        return _page(request, req, form, status=400)
    except services.ServiceError as exc:
        req.refresh_from_db()
        return _page(request, req, form, status=400, refusal=exc.message)
    messages.success(
        request,
        "Thank you: your email address is confirmed. The request is now in the queue, and "
        "an agent will review it.",
    )
    return redirect(req)


def _page(
    request: HttpRequest,
    req: CertificateRequest,
    form: EmailConfirmationForm,
    *,
    status: int = 200,
    refusal: str = "",
    problem: str = "",
    typed_form: bool = False,
) -> HttpResponse:
    return render(
        request,
        "ee/confirm_email.html",
        {
            "req": req,
            "form": form,
            "refusal": refusal,
            "problem": problem,
            "typed_form": typed_form,
            "days": settings.EMAIL_CONFIRMATION_DAYS,
        },
        status=status,
    )
