"""The certificate page and downloads answer conditional GETs and share what every visitor sees."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from requests_app import services
from tests.helpers.mfa import login_verified

pytestmark = pytest.mark.usefixtures("empty_cache")


@pytest.fixture
def cert(pending_request, agent):
    return services.approve_request(pending_request.public_id, agent=agent)


def test_certificate_page_is_not_sent_again_while_unchanged(client, cert):
    """An anonymous visitor's copy is confirmed with 304 until the certificate is revoked."""
    url = reverse("certificate_detail", args=[cert.serial])
    first = client.get(url)
    assert first.status_code == 200
    assert first["ETag"]
    again = client.get(url, headers={"if-none-match": first["ETag"]})
    assert again.status_code == 304
    assert again.content == b""
    services.revoke_certificate(cert.serial, reason="keyCompromise", actor=cert.request.acted_by)
    after = client.get(url, headers={"if-none-match": first["ETag"]})
    assert after.status_code == 200
    assert "revoked" in after.content.decode().lower()
    assert after["ETag"] != first["ETag"]


def test_shared_certificate_page_renders_once(client, cert, django_assert_num_queries):
    """The second anonymous view runs one light query and renders nothing."""
    url = reverse("certificate_detail", args=[cert.serial])
    first = client.get(url)
    with django_assert_num_queries(1):
        second = client.get(url)
    assert second.content == first.content
    assert second["ETag"] == first["ETag"]


def test_an_agents_certificate_page_has_no_etag(client, agent, cert):
    """A page rendered for a logged-in user is never confirmed from a shared copy."""
    login_verified(client, agent)
    response = client.get(reverse("certificate_detail", args=[cert.serial]))
    assert response.status_code == 200
    assert not response.has_header("ETag")


def test_unknown_certificate_page_has_no_etag(client, ca):
    """A serial nobody issued is a 404 without an ETag."""
    response = client.get(reverse("certificate_detail", args=["ABCDEF0123456789"]))
    assert response.status_code == 404
    assert not response.has_header("ETag")


@pytest.mark.parametrize("fmt", ["pem", "der", "p7b", "chain"])
def test_downloads_carry_the_fingerprint_and_answer_304(client, cert, fmt):
    """Every encoding is named by the certificate's fingerprint, from the view and the cache."""
    url = reverse("certificate_download", args=[cert.serial, fmt])
    first = client.get(url)
    assert first.status_code == 200
    assert first["ETag"] == f'"{cert.fingerprint_sha256}"'
    assert first["Content-Disposition"].startswith("attachment")
    assert client.get(url, headers={"if-none-match": first["ETag"]}).status_code == 304
    cached = client.get(url)
    assert cached.status_code == 200
    assert cached.content == first.content


def test_pem_download_is_served_from_the_cache(client, cert, django_assert_num_queries):
    """Once fetched, the PEM is served without the database."""
    url = reverse("certificate_download", args=[cert.serial, "pem"])
    first = client.get(url)
    with django_assert_num_queries(0):
        second = client.get(url)
    assert second.content == first.content == cert.pem.encode()


def test_unknown_certificate_download_is_not_cached(client, ca):
    """A 404 for a serial is never kept: the certificate may be issued a minute later."""
    url = reverse("certificate_download", args=["ABCDEF0123456789", "pem"])
    assert client.get(url).status_code == 404
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).status_code == 404
    assert queries.captured_queries  # looked up again, not served from the cache


def test_certificate_import_answers_304(client, cert):
    """The browser-install download is named by the fingerprint too."""
    url = reverse("certificate_import", args=[cert.serial])
    first = client.get(url)
    assert first["ETag"] == f'"{cert.fingerprint_sha256}"'
    assert client.get(url, headers={"if-none-match": first["ETag"]}).status_code == 304
