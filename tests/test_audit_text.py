"""The history in words: every audit action the code writes has a human name
(requests_app.audit_text), and the history tables show names and phrases, not slugs and dicts."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from django.urls import reverse

from delivery.models import Delivery
from delivery.tracking import TRACKING_STATUS
from requests_app import audit_text, services
from requests_app.acme.models import Order
from requests_app.models import AuditEvent
from tests.helpers.csrs import make_csr
from tests.helpers.mfa import login_verified

ROOT = Path(__file__).resolve().parent.parent
WRITERS = {"audit", "audit_event", "AuditEvent"}
#: Actions built from a prefix and a value, and every value they can take.
FAMILIES = {
    "acme_order_": [Order.Status.VALID, Order.Status.INVALID],  # _order_decided's outcomes
    "delivery_": sorted(set(TRACKING_STATUS.values())),  # tracking webhooks
}


def _name(func: ast.expr) -> str | None:
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _strings(node: ast.expr, where: str) -> set[str]:
    """The actions an expression can evaluate to."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.IfExp):
        return _strings(node.body, where) | _strings(node.orelse, where)
    prefix = None
    if isinstance(node, ast.BinOp) and isinstance(node.left, ast.Constant):
        prefix = node.left.value
    if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
        prefix = node.values[0].value
    if prefix in FAMILIES:
        return {prefix + str(value) for value in FAMILIES[prefix]}
    raise AssertionError(f"cannot tell which actions {where} writes: {ast.unparse(node)}")


def written_actions() -> set[str]:
    """Every audit action the code of requests_app and delivery writes, read from its source:
    the first argument of audit()/audit_event()/AuditEvent(action=...); where a function passes
    its own `action` parameter on, the action= its callers give it."""
    found: set[str] = set()
    forwarders: dict[str, int | None] = {}  # name: the position of its action parameter
    trees = []
    for package in ("requests_app", "delivery"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "migrations" not in path.parts:
                trees.append((path, ast.parse(path.read_text())))
    for path, tree in trees:
        for func in ast.walk(tree):
            if not isinstance(func, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            params = {a.arg for a in func.args.args + func.args.kwonlyargs}
            for call in ast.walk(func):
                if not isinstance(call, ast.Call) or _name(call.func) not in WRITERS:
                    continue
                given = call.args[0] if call.args else None
                given = given or next((k.value for k in call.keywords if k.arg == "action"), None)
                if given is None:
                    continue
                if isinstance(given, ast.Name) and given.id == "action" and "action" in params:
                    positional = [a.arg for a in func.args.args]
                    forwarders[func.name] = (
                        positional.index("action") if "action" in positional else None
                    )
                    continue
                found |= _strings(given, f"{path.relative_to(ROOT)}:{call.lineno}")
    for writer in WRITERS:  # audit() and audit_event() themselves: their callers are above
        forwarders.pop(writer, None)
    for path, tree in trees:
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and _name(call.func) in forwarders):
                continue
            where = f"{path.relative_to(ROOT)}:{call.lineno}"
            position = forwarders[_name(call.func)]
            if position is not None and len(call.args) > position:
                found |= _strings(call.args[position], where)
            for keyword in call.keywords:
                if keyword.arg == "action":
                    found |= _strings(keyword.value, where)
    return found


def test_the_source_reader_finds_the_known_actions():
    """The reader of the source sees direct, conditional, forwarded and built actions."""
    actions = written_actions()
    for action in [
        "request_submitted",  # direct
        "agent_access_revoked",  # one branch of a conditional
        "ca_created",  # given to the helper that writes the row
        "acme_order_invalid",  # "acme_order_" + status
        "delivery_bounced",  # f"delivery_{status}"
        "delivery_retry_scheduled",
        "expiry_digest_failed",
    ]:
        assert action in actions, action
    assert len(actions) > 60


def test_every_written_action_has_a_human_name():
    """No action the code writes lacks a name in audit_text.ACTIONS (add one there)."""
    missing = sorted(written_actions() - set(audit_text.ACTIONS))
    assert missing == []


def test_human_names_are_sentences_not_slugs():
    """Each name starts with a capital and has no underscore."""
    for action, text in audit_text.ACTIONS.items():
        assert text[0].isupper() and "_" not in text, action


def test_every_delivery_kind_has_a_name():
    """The delivery kinds a history line can name are all in DELIVERY_KINDS."""
    assert set(Delivery.Kind.values) <= set(audit_text.DELIVERY_KINDS)


def test_an_unnamed_action_still_reads_as_words():
    """An action nobody named reads as a sentence, never as the slug."""
    assert audit_text.action_text("something_new_happened") == "Something new happened"


@pytest.mark.parametrize(
    ("action", "details", "title", "phrases"),
    [
        (
            "delivery_queued",
            {
                "delivery": 7,
                "kind": "certificate",
                "backend": "email_certificate",
                "recipient": "a@b.test",
            },
            "Certificate queued for delivery by email",
            ["To a@b.test"],
        ),
        (
            "delivery_queued",
            {
                "delivery": 8,
                "kind": "request_waiting",
                "backend": "notify",
                "recipient": "ops@b.test",
            },
            "“Request waiting” notice to agents queued for delivery by email",
            ["To ops@b.test"],
        ),
        (
            "delivery_retry_scheduled",
            {
                "delivery": 7,
                "error": "connection refused",
                "attempt": 2,
                "next_attempt": "2026-12-01T10:00:30+00:00",
            },
            "Delivery failed, will be retried",
            ["Error: connection refused", "Attempt 2", "Next try 2026-12-01 10:00:30 UTC"],
        ),
        (
            "request_approved",
            {
                "serial": "535f0e13d1",
                "validity_days": 90,
                "sans": ["DNS:a.test"],
                "edited_sans": False,
            },
            "Request approved, certificate issued",
            ["Serial 53:5F:0E:13:D1", "Valid for 90 days", "Names: DNS:a.test"],
        ),
        (
            "request_submitted",
            {
                "profile": "server",
                "subject": "CN=a.test",
                "sans": ["DNS:a.test", "DNS:b.test"],
                "dropped": [],
            },
            "Request submitted",
            ["Profile: server", "Subject: CN=a.test", "Names: DNS:a.test, DNS:b.test"],
        ),
    ],
)
def test_describe(action, details, title, phrases):
    """Titles name what was sent and how; details read as phrases, the internal ids left out."""
    assert audit_text.describe(action, details) == (title, phrases)


def test_request_history_reads_in_words(client, agent, ca, django_capture_on_commit_callbacks):
    """The request page's history shows names and phrases, no slugs, no dicts, and an
    unbreakable IP address."""
    with django_capture_on_commit_callbacks(execute=True):
        req = services.submit_request(
            profile="server",
            csr=make_csr(cn="www.example.test"),
            requester_email="ops@example.test",
            ip="127.0.0.1",
        )
        services.approve_request(req, agent=agent, ip="127.0.0.1")
    login_verified(client, agent)
    html = client.get(req.get_agent_url()).content.decode()
    history = html[html.index("<h2>History</h2>") :]
    written = set(AuditEvent.objects.filter(request=req).values_list("action", flat=True))
    assert {"request_submitted", "request_approved"} <= written
    for action in written:
        assert audit_text.ACTIONS[action] in history or "queued for delivery" in history
    assert "Request submitted" in history
    assert "Request approved, certificate issued" in history
    assert not re.search(r">\s*[a-z]+(_[a-z]+)+\s*<", history)  # no slug in a cell
    assert "{" not in history and "': " not in history  # no dict dump
    assert re.search(r'<td class="mono nowrap"[^>]*>127\.0\.0\.1</td>', history)
    assert re.search(r'<td class="nowrap"[^>]*>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>', history)


def test_certificate_history_reads_in_words(client, agent, ca):
    """The certificate page's history uses the same names."""
    req = services.submit_request(
        profile="server", csr=make_csr(cn="cert.example.test"), requester_email="a@example.test"
    )
    cert = services.approve_request(req, agent=agent)
    services.revoke_certificate(cert, reason="keyCompromise", actor=agent)
    login_verified(client, agent)
    html = client.get(reverse("agent:certificate", args=[cert.serial])).content.decode()
    history = html[html.index("<h2>History</h2>") :]
    assert "Certificate revoked" in history
    assert "Reason: keyCompromise" in history
    assert "certificate_revoked" not in history.replace('data-action="certificate_revoked"', "")
