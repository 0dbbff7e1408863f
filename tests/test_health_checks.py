"""Apps add their own checks to /healthz (extensions.register_health_check)."""

import pytest

from requests_app import extensions


@pytest.fixture(autouse=True)
def _details(settings, client):
    """The details (which check failed) are for the token's holder."""
    settings.HEALTHZ_TOKEN = "token-for-tests"
    client.defaults["HTTP_AUTHORIZATION"] = "Bearer token-for-tests"


@pytest.fixture
def registered():
    saved = dict(extensions._health_checks)
    yield extensions.register_health_check
    extensions._health_checks.clear()
    extensions._health_checks.update(saved)


@pytest.mark.django_db
def test_a_failing_check_fails_healthz(client, ca, registered):
    registered("widget", lambda: None)
    assert client.get("/healthz").status_code == 200
    registered("widget", lambda: "the widget is stuck")
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["widget"] == "the widget is stuck"


@pytest.mark.django_db
def test_a_check_that_raises_fails_instead_of_500(client, ca, registered):
    def broken():
        raise RuntimeError("boom")

    registered("broken", broken)
    response = client.get("/healthz")
    assert response.status_code == 503
    assert response.json()["broken"] == "check failed: RuntimeError"
