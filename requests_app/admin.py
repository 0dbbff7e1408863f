"""Django admin: a second agent surface. Everything is read-only; agents change a request's
state only through the actions, which call the services like every other surface does."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import ActionLocation, helpers
from django.db.models import Q
from django.http import HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from . import extensions, paging, pki, profiles, services
from .downloads import CERTIFICATE_FORMATS
from .httputil import client_ip
from .models import (
    APPROVE_PERMISSION,
    AgentCertificate,
    AuditEvent,
    Certificate,
    CertificateAuthority,
    CertificateRequest,
    is_public_id,
    is_serial,
    normalize_public_id,
    serial_readings,
)
from .revocation.forms import RevokeForm
from .templatetags.serials import serial_html

BOTH_LOCATIONS = [ActionLocation.CHANGE_LIST, ActionLocation.CHANGE_FORM]


def _ask_for_a_reason(model_admin, request, queryset, form, *, title: str, action: str):
    """The intermediate page of an action that needs a reason (like Django's delete page);
    it reposts the action, from the changelist or from a change form, with the reason."""
    form_prefix = f"{ActionLocation.CHANGE_FORM.value}-"
    prefix = form_prefix if f"{form_prefix}action" in request.POST else ""
    opts = model_admin.opts
    context = {
        **model_admin.admin_site.each_context(request),
        "title": title,
        "subtitle": None,
        "opts": opts,
        "queryset": queryset,
        "form": form,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "action_field_name": f"{prefix}action",
        "action_name": action,
        "media": model_admin.media,
    }
    request.current_app = model_admin.admin_site.name
    template = f"admin/{opts.app_label}/{opts.model_name}/{action}_confirmation.html"
    return TemplateResponse(request, template, context)


class AgentActionsMixin:
    """Actions declared with permissions=["approve"] are for Certificate Manager agents."""

    def has_approve_permission(self, request) -> bool:
        return request.user.has_perm(APPROVE_PERMISSION)


def act_on_each(modeladmin, request, objects, act, *, done: str, failed: str) -> None:
    """Run one service call per selected object and report each success or refusal:
    done.format(obj=..., outcome=...) or failed.format(obj=..., error=...)."""
    for obj in objects:
        try:
            outcome = act(obj)
        except services.ServiceError as exc:
            modeladmin.message_user(
                request, failed.format(obj=obj, error=exc.message), messages.ERROR
            )
        else:
            modeladmin.message_user(
                request, done.format(obj=obj, outcome=outcome), messages.SUCCESS
            )


class ReadOnlyAdmin(admin.ModelAdmin):
    """No add, change or delete for anyone, superusers included; viewing needs view_*."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        # Computed fields in fieldsets must be declared read-only, or the form rejects them.
        return [
            name for _, options in self.get_fieldsets(request, obj) for name in options["fields"]
        ]


class ProfileFilter(admin.SimpleListFilter):
    """Profiles from the configuration, not a SELECT DISTINCT over the whole table."""

    title = "profile"
    parameter_name = "profile"

    def lookups(self, request, model_admin):
        return [(p.name, p.label) for p in profiles.all_profiles(enabled_only=False)]

    def queryset(self, request, queryset):
        return queryset.filter(profile=self.value()) if self.value() else queryset


class StatusFilter(admin.SimpleListFilter):
    """By status, opening on Pending (what waits for an agent); "All" leaves out only the
    requests whose requester has not yet confirmed the address (not the agents' business
    until then)."""

    title = "status"
    parameter_name = "status__exact"  # the name paging.counted_rows knows
    ALL = "all"
    PENDING = CertificateRequest.Status.PENDING

    def __init__(self, request, params, model, model_admin):
        # A search looks through every status unless one is chosen; so does an action, which
        # acts on the selected rows (and reports each one that is no longer pending).
        everywhere = request.GET.get("q") or request.method == "POST"
        self.default = StatusFilter.ALL if everywhere else StatusFilter.PENDING
        super().__init__(request, params, model, model_admin)

    def value(self):
        return super().value() or self.default

    def lookups(self, request, model_admin):
        return CertificateRequest.Status.choices

    def choices(self, changelist):
        yield {
            "selected": self.value() == self.ALL,
            "query_string": changelist.get_query_string({self.parameter_name: self.ALL}),
            "display": "All",
        }
        for lookup, title in self.lookup_choices:
            yield {
                "selected": self.value() == str(lookup),
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request, queryset):
        if self.value() == self.ALL:
            return queryset.exclude(status__in=CertificateRequest.NOT_IN_QUEUE)
        return queryset.filter(status=self.value())


def status_count_params(params) -> dict[str, str]:
    """The changelist's query as paging.counted_rows reads it: no status is Pending, All is
    the whole queue."""
    params = dict(params.items())
    status = params.get(StatusFilter.parameter_name) or StatusFilter.PENDING
    params[StatusFilter.parameter_name] = status
    if status == StatusFilter.ALL:
        del params[StatusFilter.parameter_name]
    return params


class RejectForm(forms.Form):
    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 4, "cols": 60}),
        help_text="Shown to the requester.",
    )


class AuditEventInline(admin.TabularInline):
    model = AuditEvent
    fk_name = "request"
    fields = ["time", "actor_label", "action", "details", "ip"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name = "history entry"
    verbose_name_plural = "history"

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(CertificateRequest)
class CertificateRequestAdmin(AgentActionsMixin, ReadOnlyAdmin):
    list_display = [
        "request_id",
        "status",
        "profile",
        "subject",
        "requester",
        "submitted_at",
    ]
    list_display_links = ["request_id"]
    list_filter = [StatusFilter, ProfileFilter]
    search_fields = ["subject", "requester_email"]
    search_help_text = (
        "A request ID or certificate serial (any case, with or without separators), "
        "or part of a subject or email address."
    )
    list_select_related = ["certificate", "acted_by"]
    ordering = ["-submitted_at"]
    show_full_result_count = False
    actions = ["approve_selected", "reject_selected", "cancel_selected"]
    inlines = [AuditEventInline]
    fieldsets = [
        (None, {"fields": ["request_id", "status", "profile", "submitted_at", "updated_at"]}),
        (
            "Requester",
            {
                "fields": [
                    "requester_name",
                    "requester_email",
                    "email_confirmed_at",
                    "email_confirmed_by",
                    "requester_note",
                    "submitter_ip",
                    "agent_for",
                ]
            },
        ),
        (
            "Certificate signing request",
            {
                "fields": [
                    "subject",
                    "key_description",
                    "requested_names",
                    "csr_names",
                    "dropped_from_csr",
                    "public_key_sha256",
                    "csr_pem",
                ]
            },
        ),
        ("Decision", {"fields": ["acted_by", "agent_note", "certificate_link", "renewal_of"]}),
    ]

    @admin.display(description="request ID", ordering="public_id")
    def request_id(self, obj: CertificateRequest) -> str:
        return obj.display_id

    @admin.display(description="requester", ordering="requester_email")
    def requester(self, obj: CertificateRequest) -> str:
        """The address, and under it whether and how it was confirmed: one column, not two,
        so that the list fits a laptop's screen."""
        confirmed = self.email_confirmed(obj)
        if confirmed == "-":
            return obj.requester_email
        return format_html("{}<br><small>confirmed {}</small>", obj.requester_email, confirmed)

    @admin.display(description="email confirmed", ordering="email_confirmed_at")
    def email_confirmed(self, obj: CertificateRequest) -> str:
        if obj.email_confirmed_at is None:
            return "-"
        return f"{obj.email_confirmed_at:%Y-%m-%d %H:%M} by {obj.email_confirmed_by}"

    @admin.display(description="key")
    def key_description(self, obj: CertificateRequest) -> str:
        name, size = pki.describe_csr_key(obj.csr_pem) or (obj.key_type, obj.key_size)
        return f"{name}, {size} bits"

    @admin.display(description="names to certify")
    def requested_names(self, obj: CertificateRequest) -> str:
        return ", ".join(obj.requested_sans) or "-"

    @admin.display(description="subjectAltName in the CSR")
    def csr_names(self, obj: CertificateRequest) -> str:
        names = pki.csr_alt_names(obj.csr_pem)
        if names is None:
            return "(unreadable)"
        return ", ".join(names) or "-"

    @admin.display(description="dropped from the CSR")
    def dropped_from_csr(self, obj: CertificateRequest) -> str:
        """What the profile leaves out of the certificate, shown before approval."""
        try:
            profile = profiles.get_profile(obj.profile)
            info = pki.check_csr(obj.csr_pem, allow_ed25519=profile.allow_ed25519)
            dropped = profiles.dropped_from(
                profile, info.csr.subject, info.sans, requester_email=obj.requester_email
            )
        except (profiles.ProfileError, pki.PKIError) as exc:
            return f"(cannot tell: {exc})" if obj.csr_pem else "-"
        return ", ".join(dropped) or "-"

    @admin.display(description="certificate")
    def certificate_link(self, obj: CertificateRequest) -> str:
        if obj.certificate is None:
            return "-"
        url = reverse("admin:requests_app_certificate_change", args=[obj.certificate.pk])
        issued = reverse("agent:certificate_issued", args=[obj.public_id])
        return format_html(
            '<a href="{}">{}</a> · <a href="{}">Certificate issued page, with delivery</a>',
            url,
            obj.certificate.serial_colons,
            issued,
        )

    #: A request in one of these has had its decision: its page offers no actions.
    DECIDED = (
        CertificateRequest.Status.COMPLETE,
        CertificateRequest.Status.REJECTED,
        CertificateRequest.Status.CANCELED,
    )

    def change_view(self, request, object_id, form_url="", extra_context=None):
        obj = self.get_object(request, object_id)
        request.decided_request = obj is not None and obj.status in self.DECIDED
        return super().change_view(request, object_id, form_url, extra_context)

    def get_actions(self, request, action_location=ActionLocation.CHANGE_LIST):
        if action_location == ActionLocation.CHANGE_FORM and getattr(
            request, "decided_request", False
        ):
            return {}
        return super().get_actions(request, action_location=action_location)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        exact = Q()
        if is_public_id(term):
            exact |= Q(public_id=normalize_public_id(term))
        if is_serial(term):
            exact |= Q(certificate__serial__in=serial_readings(term))
        if term and exact:
            results |= queryset.filter(exact)
        return results, may_have_duplicates

    def get_paginator(self, request, queryset, per_page, orphans=0, allow_empty_first_page=True):
        count = paging.counted_rows(
            status_count_params(request.GET), status_param="status__exact", ignored={"o", "p"}
        )
        if count is None:
            # The changelist's page links need a size: other filters count their own rows.
            return super().get_paginator(
                request, queryset, per_page, orphans, allow_empty_first_page
            )
        return paging.CountFreePaginator(
            queryset, per_page, orphans, allow_empty_first_page, count=count
        )

    @admin.action(
        permissions=["approve"],
        description="Approve this request",
        description_plural="Approve selected requests",
        location=BOTH_LOCATIONS,
    )
    def approve_selected(self, request, queryset):
        approved = []
        for req in queryset:
            try:
                cert = services.approve_request(
                    req.public_id, agent=request.user, ip=client_ip(request)
                )
            except services.ServiceError as exc:
                self.message_user(
                    request, f"Request {req.display_id}: {exc.message}", messages.ERROR
                )
                continue
            approved.append(req)
            issued = reverse("agent:certificate_issued", args=[req.public_id])
            self.message_user(
                request,
                format_html(
                    'Approved request {}: certificate serial {}. <a href="{}">Certificate '
                    "issued: delivery</a>",
                    req.display_id,
                    cert.serial_colons,
                    issued,
                ),
                messages.SUCCESS,
            )
        if len(approved) == 1:
            # One approval goes on to its "certificate issued" page, where the delivery is.
            return HttpResponseRedirect(
                reverse("agent:certificate_issued", args=[approved[0].public_id])
            )
        return None

    @admin.action(
        permissions=["approve"],
        description="Reject this request",
        description_plural="Reject selected requests",
        location=BOTH_LOCATIONS,
    )
    def reject_selected(self, request, queryset):
        # Like delete_selected: the first POST shows a page asking for the reason, which
        # posts the same action again with post=yes.
        form = RejectForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            act_on_each(
                self,
                request,
                queryset,
                lambda req: services.reject_request(
                    req.public_id, agent=request.user, reason=reason, ip=client_ip(request)
                ),
                done="Rejected request {obj.display_id}.",
                failed="Request {obj.display_id}: {error}",
            )
            return None
        return _ask_for_a_reason(
            self, request, queryset, form, title="Reject requests", action="reject_selected"
        )

    @admin.action(
        permissions=["approve"],
        description="Cancel this request",
        description_plural="Cancel selected requests",
        location=BOTH_LOCATIONS,
    )
    def cancel_selected(self, request, queryset):
        act_on_each(
            self,
            request,
            queryset,
            lambda req: services.cancel_request(
                req.public_id, agent=request.user, ip=client_ip(request)
            ),
            done="Canceled request {obj.display_id}.",
            failed="Request {obj.display_id}: {error}",
        )


@admin.register(Certificate)
class CertificateAdmin(AgentActionsMixin, ReadOnlyAdmin):
    list_display = ["serial_number", "subject", "profile", "status", "not_after", "downloads"]
    list_filter = ["status"]
    search_fields = ["subject"]
    search_help_text = "A serial number (any case, with or without colons) or part of a subject."
    ordering = ["-created"]
    show_full_result_count = False
    own_actions = ["revoke_selected", "release_hold_selected"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "serial_number",
                    "subject",
                    "sans",
                    "profile",
                    "status",
                    "revoked_at",
                    "revocation_reason",
                    "invalidity_date",
                    "superseded_by",
                    "superseded_at",
                    "not_before",
                    "not_after",
                    "fingerprint_sha256",
                    "ca",
                    "request_link",
                    "downloads",
                    "created",
                ]
            },
        ),
        ("PEM", {"fields": ["pem"]}),
    ]

    @property
    def actions(self) -> list:
        # Read when used, not at class creation: other apps register theirs in ready().
        return [*self.own_actions, *extensions.certificate_admin_actions()]

    @admin.display(description="download")
    def downloads(self, obj: Certificate) -> str:
        return format_html_join(
            " ",
            '<a href="{}">{}</a>',
            (
                (reverse("certificate_download", args=[obj.serial, fmt]), fmt)
                for fmt in CERTIFICATE_FORMATS
            ),
        )

    @admin.display(description="serial number", ordering="serial_sort")
    def serial_number(self, obj: Certificate) -> str:
        return serial_html(obj.serial_colons, copy=False)

    @admin.display(description="request")
    def request_link(self, obj: Certificate) -> str:
        req = obj.issued_request
        if req is None:
            return "-"
        url = reverse("admin:requests_app_certificaterequest_change", args=[req.pk])
        return format_html('<a href="{}">{}</a>', url, req.display_id)

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        term = search_term.strip()
        if term and is_serial(term):
            results |= queryset.filter(serial__in=serial_readings(term))
        return results, may_have_duplicates

    @admin.action(
        permissions=["approve"],
        description="Revoke this certificate",
        description_plural="Revoke selected certificates",
        location=BOTH_LOCATIONS,
    )
    def revoke_selected(self, request, queryset):
        # Like reject_selected: a first page asks for the reason, then posts again with post=yes.
        form = RevokeForm(request.POST if request.POST.get("post") == "yes" else None)
        if form.is_valid():
            reason = form.cleaned_data["reason"]
            act_on_each(
                self,
                request,
                queryset,
                lambda cert: services.revoke_certificate(
                    cert,
                    reason=reason,
                    invalidity_date=form.cleaned_data["invalidity_date"],
                    actor=request.user,
                    ip=client_ip(request),
                ),
                done=f"Revoked certificate {{obj.serial_colons}} ({reason}).",
                failed="Certificate {obj.serial_colons}: {error}",
            )
            return None
        return _ask_for_a_reason(
            self, request, queryset, form, title="Revoke certificates", action="revoke_selected"
        )

    @admin.action(
        permissions=["approve"],
        description="Release the hold on this certificate",
        description_plural="Release the hold on selected certificates",
        location=BOTH_LOCATIONS,
    )
    def release_hold_selected(self, request, queryset):
        act_on_each(
            self,
            request,
            queryset,
            lambda cert: services.release_hold(cert, actor=request.user, ip=client_ip(request)),
            done="Released the hold on certificate {obj.serial_colons}.",
            failed="Certificate {obj.serial_colons}: {error}",
        )


@admin.register(AgentCertificate)
class AgentCertificateAdmin(ReadOnlyAdmin):
    """Which certificate logs which agent in; linked on approval or by
    `manage.py link_agent_certificate`, unlinked on the agent's own page or by that command."""

    list_display = ["certificate", "user", "linked_at", "linked_by"]
    list_select_related = ["certificate", "user", "linked_by"]
    search_fields = ["user__username", "certificate__serial"]
    ordering = ["-linked_at"]
    fieldsets = [(None, {"fields": ["user", "certificate", "linked_at", "linked_by"]})]


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ["time", "actor_label", "action", "request", "certificate", "ip"]
    list_select_related = ["request", "certificate"]
    # No list_filter on action: it would SELECT DISTINCT over the whole, ever-growing log.
    search_fields = ["=action", "actor_label"]
    ordering = ["-time", "-id"]
    show_full_result_count = False
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "time",
                    "actor",
                    "actor_label",
                    "action",
                    "request",
                    "certificate",
                    "ca",
                    "details",
                    "ip",
                ]
            },
        )
    ]


@admin.register(CertificateAuthority)
class CertificateAuthorityAdmin(ReadOnlyAdmin):
    # Explicit fields: only public facts about the CA, never anything from its key file.
    list_display = ["name", "subject", "key_type", "not_after", "is_default", "status"]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "name",
                    "subject",
                    "key_type",
                    "serial",
                    "not_before",
                    "not_after",
                    "fingerprint_sha256",
                    "is_default",
                    "status",
                    "parent",
                    "key_filename",
                    "created",
                ]
            },
        )
    ]
    ordering = ["-created"]

    @admin.display(description="SHA-256 fingerprint")
    def fingerprint_sha256(self, obj: CertificateAuthority) -> str:
        return obj.fingerprint_sha256


# Second-factor devices change only through their owner's security page and the audited
# break-glass command (reset_agent_mfa), never by someone else in the admin.
for _device_model in (TOTPDevice, StaticDevice):
    if admin.site.is_registered(_device_model):
        admin.site.unregister(_device_model)
