"""The REST API's OpenAPI description: it is served, it is valid OpenAPI 3.1, it names exactly
the paths and methods the URL resolver routes to the REST adapter (so that it cannot drift from
the code), and schemathesis, driven by it against a live portal, finds no 500 and no answer
outside what it documents (status codes, content types, JSON shapes), for an agent with
valid credentials, for nobody, and for a user who is no agent.

The number of generated cases is bounded for `make test` (EXAMPLES per operation and mode);
CI=true runs many more and explores (no derandomisation)."""

from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
import requests
import schemathesis
from django.urls import Resolver404, URLPattern, URLResolver, get_resolver, resolve
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from requests_app import services
from requests_app.models import AuditEvent
from requests_app.rest import openapi
from tests.helpers.agent_certs import escaped, issue_agent_certificate, make_agent
from tests.helpers.csrs import make_csr

CI = os.environ.get("CI") == "true"
#: Cases per operation: valid input, and invalid input (which is slower to generate).
EXAMPLES = {"positive": 40, "negative": 15} if CI else {"positive": 8, "negative": 3}
REST_PREFIXES = ("ca/rest/", "pki/rest/")
METHODS = ("get", "post", "put", "patch", "delete")


# -- the description against the code -------------------------------------------------------


def _routes(resolver=None, prefix: str = ""):
    """(full route text, view) of every URL pattern, with the prefixes of its includes."""
    resolver = resolver or get_resolver()
    for pattern in resolver.url_patterns:
        text = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            yield from _routes(pattern, text)
        elif isinstance(pattern, URLPattern):
            yield text, pattern.callback


def _documented() -> dict[str, set[str]]:
    """Documented path -> its methods."""
    return {
        path: {m for m in item if m in METHODS}
        for path, item in openapi.document()["paths"].items()
    }


def _sample(path: str) -> str:
    """A concrete URL of a documented path (every parameter 1)."""
    return re.sub(r"\{[^}]+\}", "1", path)


def _is_rest(route: str) -> bool:
    return route.lstrip("^/").startswith(REST_PREFIXES)


def test_every_rest_route_is_documented_and_nothing_else():
    """Each documented path resolves to a REST view, and the routes they resolve to are
    exactly the routes under /ca/rest/ and /pki/rest/: nothing is routed undocumented."""
    routed = {route for route, _ in _routes() if _is_rest(route)}
    reached = set()
    for path in _documented():
        match = resolve(_sample(path))
        assert match.func.__module__.startswith("requests_app.rest."), (path, match.func)
        reached.add(match.route)
    assert reached == routed, f"routed, undocumented: {sorted(routed - reached)}"


def test_documented_actions_are_the_ones_taken(db, client, settings, ca, agent):
    """Where one route takes an action name (.../certrequests/{id}/{action}, .../certs/
    {serial}/{action}), the views take exactly the documented actions: an agent's call of
    each names the missing request or certificate, an undocumented action is no such action."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    bob = make_agent("bob")
    agent_cert, _ = issue_agent_certificate(agent, bob)
    headers = {"HTTP_X_SSL_CLIENT_CERT": escaped(agent_cert)}
    documented = [p for p in _documented() if p.startswith("/ca/rest/agent/")]
    for base in ("/ca/rest/agent/certrequests/{requestId}/", "/ca/rest/agent/certs/{serial}/"):
        actions = [p.removeprefix(base) for p in documented if p.startswith(base)]
        assert actions
        for action in [*actions, "frobnicate"]:
            response = client.post(
                _sample(base) + action, {}, content_type="application/json", **headers
            )
            body = response.json()
            if action == "frobnicate":
                assert (response.status_code, body["Message"]) == (
                    404,
                    "No such action: frobnicate",
                )
            else:
                assert "No such action" not in body["Message"], (action, body)
                assert response.status_code in (400, 404), (action, body)


README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_names_only_documented_paths():
    """Every REST path the README's "Automating with the REST API" section names (its table
    and its curl examples) is a documented path that the resolver routes to the adapter."""
    text = README.read_text().split("## Automating with the REST API", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"(/(?:ca|pki)/rest/[^\s`'\")?]*)", text)) - {"/ca/rest/"}
    assert len(named) > 15
    documented = {resolve(_sample(path)).route for path in _documented()}
    for path in named:
        concrete = re.sub(r"\{[^}]+\}|\.\.\.|…", "1", path)
        try:
            route = resolve(concrete).route
        except Resolver404:
            route = None
        assert route in documented, f"the README names {path}, which is no documented path"


@pytest.mark.django_db
@pytest.mark.usefixtures("empty_cache")
def test_documented_methods_are_the_ones_answered(client):
    """Each documented method of each path is answered (not 405) and every other method
    gets 405 from the portal, as a Dogtag error."""
    for template, methods in _documented().items():
        path = _sample(template)
        for method in METHODS:
            response = getattr(client, method)(path, content_type="application/json")
            if method in methods:
                assert response.status_code != 405, (method, path)
            else:
                assert response.status_code == 405, (method, path, response.status_code)
                assert response.json()["Code"] == 405, (method, path)


def test_the_description_is_openapi_3_1_and_served(client, db):
    """/ca/rest/openapi.json serves the description as JSON; schemathesis loads it as
    OpenAPI 3.1 with every operation valid; every operation documents its error answers as
    Dogtag's PKIException JSON."""
    response = client.get(openapi.OPENAPI_PATH)
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    document = response.json()
    assert document == openapi.document()
    assert document["openapi"] == "3.1.0"
    schema = schemathesis.openapi.from_dict(document)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) == sum(len(m) for m in _documented().values())
    error = {"$ref": "#/components/schemas/PKIException"}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, answer in operation["responses"].items():
                if status.startswith(("4", "5")):
                    name = answer["$ref"].rsplit("/", 1)[1]
                    body = document["components"]["responses"][name]["content"]
                    assert body["application/json"]["schema"] == error, (path, method, status)
    schemes = document["components"]["securitySchemes"]
    assert schemes["agentPassword"] == {**schemes["agentPassword"], "scheme": "basic"}
    assert schemes["agentCertificate"]["type"] == "mutualTLS"


# -- schemathesis against a live portal --------------------------------------------------------


@pytest.fixture
def portal(live_server, settings, ca, agent):
    """A live portal with something to find: a pending request, an issued certificate and
    one on hold; the agent's certificate (believed from 127.0.0.1, the test's proxy)."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    # Plain http on loopback: the session cookie that carries a REST login must be sent.
    settings.SESSION_COOKIE_SECURE = False
    bob = make_agent("bob")
    pending = services.submit_request(
        profile="server", csr=make_csr(cn="pending.example.test"), requester_email="a@example.test"
    )
    done = services.submit_request(
        profile="server", csr=make_csr(cn="issued.example.test"), requester_email="a@e.test"
    )
    issued = services.approve_request(done, agent=bob)
    held = services.approve_request(
        services.submit_request(
            profile="server", csr=make_csr(cn="held.example.test"), requester_email="a@e.test"
        ),
        agent=bob,
    )
    services.revoke_certificate(held, reason="certificateHold", actor=bob)
    agent_cert, _ = issue_agent_certificate(agent, bob)
    return {
        "url": live_server.url,
        "agent_headers": {"X-SSL-Client-Cert": escaped(agent_cert)},
        "request_ids": [str(pending.pk), str(done.pk)],
        "serials": ["0x" + issued.serial, "0x" + held.serial],
    }


def _with_real_ids(document: dict, portal: dict) -> dict:
    """The description with the path parameters narrowed to the portal's real IDs, so that
    generated calls reach existing requests and certificates (random IDs reach none)."""
    known = {"requestId": portal["request_ids"], "serial": portal["serials"]}
    for item in document["paths"].values():
        for operation in item.values():
            for param in operation.get("parameters", []):
                if param["in"] == "path" and param["name"] in known:
                    param["schema"] = {"enum": known[param["name"]]}
    return document


def _has_ids(operation) -> bool:
    return "{" in operation.path


CHECKS = [status_code_conformance, content_type_conformance, response_schema_conformance]
POSITIVE = (GenerationMode.POSITIVE,)


def _explore(operation, mode, *, base_url, session, headers, verdict) -> int:
    """EXAMPLES generated calls of one operation in one mode; each answer is no 500, passes
    schemathesis's checks and `verdict(operation, case, response)`."""
    calls = 0

    @hypothesis_settings(
        max_examples=EXAMPLES[mode.value],
        deadline=None,
        derandomize=not CI,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case):
        nonlocal calls
        response = case.call(base_url=base_url, session=session, headers=headers)
        calls += 1
        assert response.status_code < 500, (case.as_curl_command(), response.text)
        verdict(operation, case, response)
        case.validate_response(response, checks=CHECKS)

    try:
        check()
    except Unsatisfiable:
        # No invalid input exists for an operation without parameters or body.
        assert mode is GenerationMode.NEGATIVE and calls == 0, operation.label
    return calls


def _run(
    schema,
    base_url: str,
    headers: dict,
    verdict,
    *,
    only=lambda op: True,
    modes=(GenerationMode.POSITIVE, GenerationMode.NEGATIVE),
) -> int:
    """Every operation (that `only` selects), with valid and (unless `modes` says otherwise)
    invalid input. Returns the number of calls made."""
    calls = 0
    # Closed at the end, so that no keep-alive connection outlives the test in the live
    # server's threads (they would close the test's database connection from another thread).
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            if not only(operation):
                continue
            for mode in modes:
                calls += _explore(
                    operation,
                    mode,
                    base_url=base_url,
                    session=session,
                    headers=headers,
                    verdict=verdict,
                )
    return calls


def _is_agent(operation) -> bool:
    return operation.path.startswith("/ca/rest/agent/")


def test_schemathesis_as_an_agent(portal):
    """With a linked agent certificate, every operation of the description answers no 500
    and only what it documents, for valid and invalid input alike, with random IDs and
    with the IDs of a pending request and of issued and held certificates."""
    schema = schemathesis.openapi.from_dict(openapi.document())
    real = schemathesis.openapi.from_dict(_with_real_ids(openapi.document(), portal))
    headers, nothing = portal["agent_headers"], lambda *a: None
    calls = _run(schema, portal["url"], headers, nothing)
    calls += _run(real, portal["url"], headers, nothing, only=_has_ids, modes=POSITIVE)
    assert calls > 0


def _refused(status: int, class_name: str):
    """Every answer of an agent resource is this refusal (or 405 for another method, 400 for
    a POST that is not application/json, which is refused before any credential, or 403 once
    the random credentials schemathesis sends for the basic scheme reach the lockout)."""

    def verdict(operation, case, response):
        if not _is_agent(operation):
            return
        body = response.json()
        if response.status_code == 400:
            assert "Content-Type: application/json" in body["Message"], case.as_curl_command()
            return
        if response.status_code == 403 and body["Message"].startswith("Too many failed logins"):
            return  # schemathesis's own random basic credentials ran into the lockout
        assert response.status_code in (status, 405), (case.as_curl_command(), body)
        if response.status_code == status:
            assert body["ClassName"].endswith(class_name), body

    return verdict


def test_schemathesis_agent_resources_without_credentials(portal):
    """Without credentials, every agent resource answers 401 (UnauthorizedException) to
    every generated call, for existing requests and certificates too."""
    schema = schemathesis.openapi.from_dict(_with_real_ids(openapi.document(), portal))
    verdict = _refused(401, "UnauthorizedException")
    assert _run(schema, portal["url"], {}, verdict, only=_is_agent, modes=POSITIVE)


def test_schemathesis_agent_resources_as_a_user(portal, django_user_model):
    """A user who is no agent, with the right password, gets 403 (ForbiddenException) from
    every agent resource, whatever the input, and changes nothing."""
    django_user_model.objects.create_user("ada", "ada@example.test", "user-pass-123")
    schema = schemathesis.openapi.from_dict(_with_real_ids(openapi.document(), portal))
    headers = {"Authorization": "Basic " + base64.b64encode(b"ada:user-pass-123").decode()}
    before = AuditEvent.objects.order_by("-pk").values_list("pk", flat=True).first()
    verdict = _refused(403, "ForbiddenException")
    assert _run(schema, portal["url"], headers, verdict, only=_is_agent, modes=POSITIVE)
    changes = AuditEvent.objects.filter(pk__gt=before)
    assert not changes.exists(), list(changes.values_list("action", flat=True))
