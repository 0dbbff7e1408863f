from requests_app import services


def test_submit_and_approve(pending_request, agent):
    """A pending request approved by an agent yields a certificate."""
    cert = services.approve_request(pending_request.public_id, agent=agent)
    assert cert.sans == ["DNS:www.example.test"]
