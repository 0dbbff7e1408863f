"""The REST API's resources with Django's test client: the ID and serial mapping, JSON
errors for every bad input (malformed, oversized, unknown profile, unknown method), search
criteria and paging, the enrollment rate limit, and that refusals change nothing."""

from __future__ import annotations

import json

import pytest
from cryptography import x509
from django.test import Client

from requests_app import services
from requests_app.models import AuditEvent, Certificate, CertificateRequest
from requests_app.rest import ids
from requests_app.rest.http import MAX_BODY
from tests.helpers.csrs import make_csr
from tests.helpers.mailbox import confirmed
from tests.helpers.mfa import add_totp_device
from tests.helpers.rest import agent_secret, basic

pytestmark = pytest.mark.usefixtures("empty_cache")

Status = CertificateRequest.Status
BAD_REQUEST = "com.netscape.certsrv.base.BadRequestException"


def _enrollment(csr: str, *, profile="caServerCert", email="ops@example.test") -> dict:
    """The body CertClient.submit_enrollment_request sends, abridged."""
    return {
        "Attributes": {"Attribute": []},
        "ProfileID": profile,
        "Renewal": False,
        "SerialNumber": None,
        "Input": [
            {
                "id": "i1",
                "ClassID": "certReqInputImpl",
                "Attribute": [
                    {"name": "cert_request_type", "Value": "pkcs10", "Descriptor": None},
                    {"name": "cert_request", "Value": csr},
                ],
                "ConfigAttribute": [],
                "Text": None,
            },
            {
                "id": "i2",
                "Attribute": [
                    {"name": "requestor_name", "Value": "Tess"},
                    {"name": "requestor_email", "Value": email},
                ],
                "ConfigAttribute": [],
            },
        ],
        "Output": [],
    }


def _post(client, path, body, **extra):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(path, data, content_type="application/json", **extra)


def _error(response, status: int, class_name: str = BAD_REQUEST) -> dict:
    assert response["Content-Type"] == "application/json", response.content[:300]
    body = response.json()
    assert response.status_code == status, body
    assert body["ClassName"] == class_name and body["Code"] == status
    assert isinstance(body["Attributes"]["Attribute"], list)
    return body


# --- IDs ---------------------------------------------------------------------------------


def test_request_ids_round_trip(pending_request):
    """Decimal, 0x-hex and the public ID (any case, hyphens) all name the same request."""
    number = ids.request_number(pending_request.public_id)
    assert 0 <= number < 1 << 100
    assert ids.public_id_of(number) == pending_request.public_id
    for text in (
        str(number),
        hex(number),
        hex(number).upper().replace("0X", "0x"),
        pending_request.public_id,
        pending_request.display_id.lower(),
    ):
        assert ids.find_request(text) == pending_request, text
    for text in ("0x", "-1", str(1 << 100), "12345", "x" * 200, "", "0xzz"):
        assert ids.find_request(text) is None, text


def test_serials_read_as_dogtag_reads_them():
    """0x is hex, digits are decimal, hex letters without 0x are hex (as our pages show)."""
    assert ids.serial_hex("0x1000") == "1000"
    assert ids.serial_hex("4096") == "1000"
    assert ids.serial_hex("3fa2") == "3fa2"
    assert ids.serial_hex("3F:A2") == "3fa2"
    for bad in ("", "0x", "zz", "-5", "1" * 100):
        assert ids.serial_hex(bad) is None, bad


def test_request_info_and_certificate_ids(client, ca, agent, pending_request):
    """requestURL ends in the decimal ID; certId is 0x-hex and certURL decimal."""
    cert = services.approve_request(pending_request, agent=agent)
    info = client.get(f"/ca/rest/certrequests/{pending_request.public_id}").json()
    assert info["requestURL"].endswith(
        f"/ca/rest/certrequests/{ids.request_decimal(pending_request)}"
    )
    assert info["requestID"] == ids.request_hex(pending_request)
    assert info["certId"] == f"0x{cert.serial}"
    assert info["certURL"].endswith(f"/ca/rest/certs/{int(cert.serial, 16)}")
    data = client.get(f"/ca/rest/certs/{int(cert.serial, 16)}").json()
    assert data["id"] == f"0x{cert.serial}" and data["Status"] == "VALID"
    assert data["Encoded"].startswith("-----BEGIN CERTIFICATE-----")


def test_unknown_ids_are_not_found_in_dogtags_words(client, ca):
    """Unknown request and certificate: 404 with the class and the decimal attribute."""
    body = _error(
        client.get("/ca/rest/certrequests/7"),
        404,
        "com.netscape.certsrv.request.RequestNotFoundException",
    )
    assert body["Message"] == "Request ID 0x7 not found"
    assert body["Attributes"]["Attribute"] == [{"name": "requestId", "value": "7"}]
    body = _error(
        client.get("/ca/rest/certs/0x1000"), 404, "com.netscape.certsrv.cert.CertNotFoundException"
    )
    assert body["Attributes"]["Attribute"] == [{"name": "certId", "value": "4096"}]
    _error(
        client.get("/ca/rest/certs/not-a-serial"),
        404,
        "com.netscape.certsrv.cert.CertNotFoundException",
    )


# --- enrollment ---------------------------------------------------------------------------


def test_enrollment_through_rest_is_audited_like_the_web(client, ca):
    """A REST enrollment enters the queue with channel "rest" and its audit row."""
    response = _post(client, "/ca/rest/certrequests", _enrollment(make_csr(cn="h.example.test")))
    assert response.status_code == 200
    [entry] = response.json()["entries"]
    req = CertificateRequest.objects.get()
    assert entry["requestStatus"] == "pending" and req.channel == "rest"
    assert req.requester_email == "ops@example.test" and req.requester_name == "Tess"
    event = AuditEvent.objects.get(action="request_submitted")
    assert event.request == req


def test_our_own_profile_names_work_too(client, ca):
    """ "server" is as good as "caServerCert"."""
    response = _post(
        client,
        "/ca/rest/certrequests",
        _enrollment(make_csr(cn="h.example.test"), profile="server"),
    )
    assert response.status_code == 200
    assert client.get("/ca/rest/certrequests/profiles/server").json()["ProfileID"] == "server"


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ("", "empty"),
        ("[" * 100_000 + "]" * 100_000, "larger than"),
        (json.dumps({"ProfileID": "caServerCert", "Input": {"a": 1}}), "Input must be a list"),
        (
            json.dumps({"ProfileID": "caServerCert", "Input": [{"Attribute": [{"Value": "x"}]}]}),
            "name",
        ),
        (json.dumps({"ProfileID": {"x": 1}}), "must be a string"),
        (json.dumps({"ProfileID": "caNoSuchCert"}), "not found"),
        (json.dumps({"ProfileID": "caServerCert"}), "cert_request"),
        (json.dumps({"Renewal": True}), "SerialNumber"),
    ],
)
def test_bad_enrollment_bodies_are_bad_requests(client, ca, body, message):
    """Malformed, oversized or incomplete bodies and unknown profiles: 400 JSON, nothing made."""
    response = _post(client, "/ca/rest/certrequests", body)
    assert message in _error(response, 400)["Message"]
    assert CertificateRequest.objects.count() == 0


def test_bad_values_inside_the_inputs(client, ca):
    """Non-text values, NUL bytes and bad CSRs are refused by name."""
    body = _enrollment(make_csr(cn="h.example.test"))
    body["Input"][1]["Attribute"][0]["Value"] = {"nested": True}
    assert "requestor_name" in _error(_post(client, "/ca/rest/certrequests", body), 400)["Message"]
    body = _enrollment(
        "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----"
    )
    _error(_post(client, "/ca/rest/certrequests", body), 400)
    body = _enrollment(make_csr(cn="h.example.test"))
    body["Input"][1]["Attribute"][0]["Value"] = "Te\x00ss"
    _error(_post(client, "/ca/rest/certrequests", body), 400)
    assert CertificateRequest.objects.count() == 0


def test_an_oversized_body_is_refused_before_it_is_read(client, ca):
    """A body over the limit is a BadRequest, not a 500 or Django's HTML 400."""
    response = _post(client, "/ca/rest/certrequests", "x" * (MAX_BODY + 1))
    assert "larger than" in _error(response, 400)["Message"]


def test_the_enrollment_rate_limit_answers_json(client, ca, settings):
    """Past ENROLL_RATE_LIMIT: 429 PKIException with Retry-After."""
    settings.ENROLL_RATE_LIMIT = "1/3600"
    _post(client, "/ca/rest/certrequests", _enrollment(make_csr(cn="a.example.test")))
    response = _post(client, "/ca/rest/certrequests", _enrollment(make_csr(cn="b.example.test")))
    _error(response, 429, "com.netscape.certsrv.base.PKIException")
    assert response["Retry-After"]


def test_wrong_methods_and_unknown_actions(client, ca, agent, pending_request):
    """Unknown methods are 405 JSON; an unknown agent action is ResourceNotFound."""
    response = client.delete("/ca/rest/certrequests")
    _error(response, 405)
    assert response["Allow"] == "POST"
    device = add_totp_device(agent)
    header = {"HTTP_AUTHORIZATION": basic("agent1", agent_secret(device))}
    url = f"/ca/rest/agent/certrequests/{ids.request_decimal(pending_request)}/explode"
    response = _post(client, url, {}, **header)
    _error(response, 404, "com.netscape.certsrv.base.ResourceNotFoundException")


def test_user_profile_requests_wait_for_the_mailbox(client, ca):
    """A user certificate via REST awaits the requester's confirmation, shown as pending."""
    body = _enrollment(
        make_csr(cn="Ada", sans=[x509.RFC822Name("ada@example.test")]),
        profile="caUserCert",
        email="ada@example.test",
    )
    [entry] = _post(client, "/ca/rest/certrequests", body).json()["entries"]
    assert entry["requestStatus"] == "pending"
    assert CertificateRequest.objects.get().status == Status.AWAITING_EMAIL


# --- agent actions ------------------------------------------------------------------------


@pytest.fixture
def agent_header(agent):
    return {"HTTP_AUTHORIZATION": basic("agent1", agent_secret(add_totp_device(agent)))}


def test_approve_applies_the_agents_edits(client, ca, pending_request, agent_header):
    """Validity and alternative names edited in the review's policy set reach the
    certificate; an edit the profile refuses changes nothing."""
    url = f"/ca/rest/agent/certrequests/{ids.request_decimal(pending_request)}"
    review = client.get(url, **agent_header).json()
    policies = review["ProfilePolicySet"][0]["policies"]
    policies[1]["def"]["attributes"][0]["Value"] = "9999"
    _error(_post(client, url + "/approve", review, **agent_header), 400)
    assert Certificate.objects.count() == 0
    review = client.get(url, **agent_header).json()
    policies = review["ProfilePolicySet"][0]["policies"]
    policies[1]["def"]["attributes"][0]["Value"] = "30"
    policies[2]["def"]["attributes"][0]["Value"] = "www.example.test, shop.example.test"
    response = _post(client, url + "/approve", review, **agent_header)
    assert response.status_code == 204, response.content
    cert = Certificate.objects.get()
    assert cert.sans == ["DNS:www.example.test", "DNS:shop.example.test"]
    assert (cert.not_after - cert.not_before).days == 30


def test_malformed_action_bodies_consume_no_nonce(client, ca, pending_request, agent_header):
    """A broken action body is a BadRequest; the review's nonce still works afterwards."""
    url = f"/ca/rest/agent/certrequests/{ids.request_decimal(pending_request)}"
    review = client.get(url, **agent_header).json()
    _error(_post(client, url + "/approve", "{broken", **agent_header), 400)
    _error(
        _post(client, url + "/approve", {"ProfilePolicySet": "x", "nonce": [1]}, **agent_header),
        400,
    )
    assert _post(client, url + "/approve", review, **agent_header).status_code == 204


def test_revoke_needs_the_reviews_nonce_and_a_known_reason(
    client, ca, agent, pending_request, agent_header
):
    """No nonce, a bad reason or a future invalidity date revoke nothing."""
    cert = services.approve_request(pending_request, agent=agent)
    url = f"/ca/rest/agent/certs/0x{cert.serial}"
    _error(
        _post(client, url + "/revoke", {"Reason": "Key_Compromise", "Nonce": None}, **agent_header),
        400,
    )
    nonce = client.get(url, **agent_header).json()["Nonce"]
    _error(_post(client, url + "/revoke", {"Reason": "Bored", "Nonce": nonce}, **agent_header), 400)
    future = {"Reason": "Key_Compromise", "Nonce": nonce, "InvalidityDate": 4102444800000}
    _error(_post(client, url + "/revoke", future, **agent_header), 400)
    cert.refresh_from_db()
    assert cert.status == Certificate.Status.VALID
    # None of those spent the nonce.
    hold = _post(
        client, url + "/revoke", {"Reason": "Certificate_Hold", "Nonce": nonce}, **agent_header
    )
    assert hold.json()["requestType"] == "revocation"
    nonce = client.get(url, **agent_header).json()["Nonce"]
    release = {"Reason": "Remove_from_CRL", "Nonce": nonce}
    assert (
        _post(client, url + "/revoke", release, **agent_header).json()["requestType"]
        == "unrevocation"
    )
    cert.refresh_from_db()
    assert cert.status == Certificate.Status.VALID


# --- search --------------------------------------------------------------------------------


def test_search_criteria_and_paging(client, ca, agent):
    """Serial range, subject, status; pages by start/size with a next link and no count."""
    certs = []
    for n in range(3):
        req = services.submit_request(
            profile="server",
            csr=make_csr(cn=f"s{n}.example.test"),
            requester_email="o@example.test",
        )
        certs.append(services.approve_request(req, agent=agent))
    services.revoke_certificate(certs[0], reason="keyCompromise", actor=agent)
    everything = _post(client, "/ca/rest/certs/search", {"serialNumberRangeInUse": True}).json()
    assert len(everything["entries"]) == 3
    first = _post(client, "/ca/rest/certs/search?start=0&size=2", {}).json()
    assert len(first["entries"]) == 2 and first["Link"][0]["rel"] == "next"
    second = client.get(first["Link"][0]["href"]).json()
    assert len(second["entries"]) == 1 and "Link" not in second
    revoked = _post(client, "/ca/rest/certs/search", {"status": "REVOKED"}).json()["entries"]
    assert [e["id"] for e in revoked] == [f"0x{certs[0].serial}"]
    by_name = {"subjectInUse": True, "commonName": "s1.example.test", "matchExactly": True}
    assert [e["id"] for e in _post(client, "/ca/rest/certs/search", by_name).json()["entries"]] == [
        f"0x{certs[1].serial}"
    ]
    serial = certs[2].serial
    by_serial = {
        "serialNumberRangeInUse": True,
        "serialFrom": f"0x{serial}",
        "serialTo": f"0x{serial}",
    }
    assert [
        e["id"] for e in _post(client, "/ca/rest/certs/search", by_serial).json()["entries"]
    ] == [f"0x{serial}"]
    listed = client.get("/ca/rest/certs/search?status=VALID").json()["entries"]
    assert len(listed) == 2
    assert isinstance(listed[0]["NotValidBefore"], int)


@pytest.mark.parametrize(
    "criteria",
    [
        {"status": "SHINY"},
        {"serialNumberRangeInUse": True, "serialFrom": "nope"},
        {"issuedOnInUse": True, "issuedOnFrom": "yesterday"},
        {"subjectInUse": True, "commonName": {"a": 1}},
        {"revocationReasonInUse": True, "revocationReason": "Bored"},
    ],
)
def test_bad_search_criteria_are_bad_requests(client, ca, criteria):
    """Criteria that cannot be read are refused with the name of the criterion."""
    _error(_post(client, "/ca/rest/certs/search", criteria), 400)


def test_info_resources(client):
    """/pki/rest/info gives a version InfoClient parses."""
    info = client.get("/pki/rest/info").json()
    assert [int(p) for p in info["Version"].split(".")]
    assert client.get("/ca/rest/info").status_code == 200


@pytest.mark.parametrize(
    "path", ["/ca/rest/nothing", "/ca/rest/certrequests/", "/ca/rest/certs/1/2/3", "/pki/rest"]
)
def test_unknown_rest_paths_are_json(client, path):
    """A path under the API that names nothing is ResourceNotFound JSON, not an HTML page;
    other paths keep Django's page."""
    _error(client.get(path), 404, "com.netscape.certsrv.base.ResourceNotFoundException")
    other = client.get("/no-such-page/")
    assert other.status_code == 404 and other["Content-Type"].startswith("text/html")


def test_search_lists_personal_certificates_to_agents_only(client, ca, agent, django_user_model):
    """Anyone sees server certificates; a user certificate (a person and their mailbox) is
    listed to an agent, not to anonymous callers or other accounts, and stays reachable by
    its serial. Wrong credentials are refused, not quietly answered as anonymous."""
    server = services.approve_request(
        services.submit_request(
            profile="server", csr=make_csr(cn="s.example.test"), requester_email="o@example.test"
        ),
        agent=agent,
    )
    personal = services.approve_request(
        confirmed(
            services.submit_request(
                profile="user",
                csr=make_csr(cn="Ada", sans=[x509.RFC822Name("ada@example.test")]),
                requester_email="ada@example.test",
            )
        ),
        agent=agent,
    )

    def listed(**headers):
        response = _post(Client(), "/ca/rest/certs/search", {}, **headers)
        assert response.status_code == 200, response.content
        return {e["id"] for e in response.json()["entries"]}

    assert listed() == {f"0x{server.serial}"}
    django_user_model.objects.create_user("clerk", "clerk@example.test", "clerk-pass-123")
    assert listed(HTTP_AUTHORIZATION=basic("clerk", "clerk-pass-123")) == {f"0x{server.serial}"}
    device = add_totp_device(agent)
    everything = listed(HTTP_AUTHORIZATION=basic("agent1", agent_secret(device)))
    assert everything == {f"0x{server.serial}", f"0x{personal.serial}"}
    wrong = _post(client, "/ca/rest/certs/search", {}, HTTP_AUTHORIZATION=basic("agent1", "no"))
    _error(wrong, 401, "com.netscape.certsrv.base.UnauthorizedException")
    assert client.get(f"/ca/rest/certs/0x{personal.serial}").status_code == 200


# --- links --------------------------------------------------------------------------------

URL_KEYS = ("requestURL", "certURL", "profileURL")


def _links(body) -> list[tuple[str, str]]:
    """Every (kind, URL) an answer hands the client to follow."""
    found = []
    if isinstance(body, dict):
        for key, value in body.items():
            if key in URL_KEYS and isinstance(value, str):
                found.append((key, value))
            elif key == "Link":
                found += [("next", link["href"]) for link in value if link.get("rel") == "next"]
            else:
                found += _links(value)
    elif isinstance(body, list):
        for value in body:
            found += _links(value)
    return found


def test_every_url_in_the_answers_is_served(client, ca, agent, agent_header):
    """Every requestURL, certURL, profileURL and next link the API answers with is an
    absolute URL of this portal that answers 200 with JSON, and what it answers links on
    (followed to the end); a POSTed search's next pages continue the same search."""
    issued = []
    for n in range(3):
        req = services.submit_request(
            profile="server", csr=make_csr(cn=f"l{n}.example.test"), requester_email="o@x.test"
        )
        issued.append(services.approve_request(req, agent=agent))
    services.revoke_certificate(issued[0], reason="keyCompromise", actor=agent)
    for n in range(2):
        services.submit_request(
            profile="server", csr=make_csr(cn=f"p{n}.example.test"), requester_email="o@x.test"
        )
    enrolled = _post(client, "/ca/rest/certrequests", _enrollment(make_csr(cn="e.example.test")))
    issued_request = issued[1].issued_request
    answers = [
        client.get("/ca/rest/certrequests/profiles"),
        enrolled,
        client.get(f"/ca/rest/certrequests/{ids.request_decimal(issued_request)}"),
        _post(client, "/ca/rest/certs/search?size=1", {"status": "VALID"}),
        client.get("/ca/rest/certs/search?size=1&status=VALID"),
        client.get("/ca/rest/agent/certrequests?pageSize=1", **agent_header),
    ]
    queue = []
    for response in answers:
        assert response.status_code == 200, response.content[:300]
        queue += _links(response.json())
    seen: set[str] = set()
    kinds: set[str] = set()
    while queue:
        kind, url = queue.pop()
        if url in seen:
            continue
        seen.add(url)
        kinds.add(kind)
        assert url.startswith("http://testserver/ca/rest/"), url
        response = client.get(url, **agent_header)
        assert response.status_code == 200, (kind, url, response.content[:300])
        assert response["Content-Type"] == "application/json"
        queue += _links(response.json())
    assert kinds == {"requestURL", "certURL", "profileURL", "next"}
    # The POSTed search's pages hold the valid certificates only, each once: the body's
    # criteria, not a criterion in the POST's query (which the POST itself ignores).
    page = _post(client, "/ca/rest/certs/search?size=1&status=REVOKED", {"status": "VALID"}).json()
    listed = [entry["id"] for entry in page["entries"]]
    while "Link" in page:
        page = client.get(page["Link"][0]["href"]).json()
        listed += [entry["id"] for entry in page["entries"]]
    assert sorted(listed) == sorted(f"0x{cert.serial}" for cert in issued[1:])


def test_a_nul_escaped_anywhere_in_a_json_body_is_a_bad_request():
    """A NUL spelled as \\u0000 in any key or value is refused before it reaches the database
    (schemathesis found it as a 500 on PostgreSQL)."""
    from django.test import RequestFactory

    from requests_app.rest.http import RestError, json_body

    for body in ('{"a": "x\\u0000"}', '{"a\\u0000": 1}', '{"a": [{"b": ["\\u0000"]}]}'):
        request = RequestFactory().post("/ca/rest/x", body, content_type="application/json")
        with pytest.raises(RestError):
            json_body(request)
    ok = RequestFactory().post(
        "/ca/rest/x", '{"a": ["b", 1, null]}', content_type="application/json"
    )
    assert json_body(ok) == {"a": ["b", 1, None]}
