"""The agent page "ACME accounts": the external account bindings that let a requester's
ACME client make an account, with the names it may obtain; create one (its HMAC key shown
once, or mailed to the requester), revoke one.

The key is never kept for a second look: it is rendered into the answer to the POST that
made it (not stored in the session or a message, which would keep it in clear), that
answer is never cached, and the view's variables are hidden from error reports."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_POST, require_safe

from .. import paging, profiles, services
from ..acme import credentials
from ..acme import services as acme_services
from ..httputil import agent_required

PAGE_SIZE = 50


def _hostname_profiles() -> list[tuple[str, str]]:
    return [(p.name, p.label) for p in profiles.all_profiles() if p.takes_hostnames]


class BindingForm(forms.Form):
    email = forms.EmailField(label="Requester's email", max_length=254)
    names = forms.CharField(
        label="Names",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Exact names (www.example.com) and patterns (*.example.com: every name "
        "below example.com), separated by spaces, commas or lines.",
    )
    profile = forms.ChoiceField(label="Profile", choices=())
    days = forms.IntegerField(
        label="Days until the binding expires",
        initial=90,
        min_value=1,
        max_value=acme_services.MAX_BINDING_DAYS,
    )
    send = forms.BooleanField(
        label="Mail the credentials to the requester instead of showing them here",
        required=False,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["profile"].choices = _hostname_profiles()
        self.fields["profile"].initial = "server"

    def clean_names(self) -> list[str]:
        names = self.cleaned_data["names"].replace(",", " ").split()
        if not names:
            raise forms.ValidationError("Name at least one hostname or *.domain pattern.")
        return names


def _render_list(
    request: HttpRequest, *, form: BindingForm | None = None, status: int = 200
) -> HttpResponse:
    rows = acme_services.list_bindings()
    page = paging.CountFreePaginator(rows, PAGE_SIZE).look_ahead_page(request.GET.get("page"))
    for binding in page.object_list:
        binding.status_label = credentials.binding_status(binding)
    return render(
        request,
        "agent/acme_accounts.html",
        {
            "bindings": page.object_list,
            "page": page.number,
            "has_previous": page.has_previous(),
            "has_next": page.has_next(),
            "form": form or BindingForm(),
        },
        status=status,
    )


@agent_required
@require_safe
def binding_list(request: HttpRequest) -> HttpResponse:
    return _render_list(request)


@never_cache
@sensitive_variables("hmac_key")
@agent_required
@require_POST
def create_binding(request: HttpRequest) -> HttpResponse:
    form = BindingForm(request.POST)
    if not form.is_valid():
        return _render_list(request, form=form, status=400)
    data = form.cleaned_data
    try:
        binding, hmac_key = credentials.create_binding_for_requester(
            email=data["email"],
            names=data["names"],
            profile=data["profile"],
            days=data["days"],
            send=data["send"],
            actor=request.user,
        )
    except services.ServiceError as exc:
        form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        return _render_list(request, form=form, status=400)
    return render(
        request,
        "agent/acme_binding_created.html",
        {"binding": binding, "hmac_key": hmac_key},
    )


@agent_required
@require_POST
def revoke_binding(request: HttpRequest, kid: str) -> HttpResponse:
    try:
        binding = acme_services.revoke_binding(kid, actor=request.user)
    except services.ServiceError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, f"ACME binding {binding.kid} of {binding.email} revoked.")
    return redirect("agent:acme_accounts")
