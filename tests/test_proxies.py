"""The client's address behind reverse proxies: X-Forwarded-For is believed only from a
TRUSTED_PROXIES peer, and then only up to the first hop that is not a trusted proxy."""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from django.test import RequestFactory

from requests_app.httputil import client_ip, from_trusted_proxy
from tests.helpers.nginx import Nginx, nginx_binary


def _request(peer: str, forwarded: str | None = None):
    extra = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        extra["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **extra)


def test_without_trusted_proxies_the_header_is_ignored(settings):
    settings.TRUSTED_PROXIES = []
    request = _request("203.0.113.9", "198.51.100.1")
    assert client_ip(request) == "203.0.113.9"
    assert not from_trusted_proxy(request)


def test_an_untrusted_peer_cannot_choose_its_address(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(_request("203.0.113.9", "10.0.0.1, 198.51.100.1")) == "203.0.113.9"


def test_a_trusted_proxy_names_the_client(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    request = _request("10.1.2.3", "198.51.100.7")
    assert from_trusted_proxy(request)
    assert client_ip(request) == "198.51.100.7"


def test_forged_hops_left_of_the_real_client_are_ignored(settings):
    # The client sent "X-Forwarded-For: 1.2.3.4"; the proxy appended what it saw.
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(_request("10.0.0.1", "1.2.3.4, 198.51.100.7")) == "198.51.100.7"


def test_a_chain_of_trusted_proxies_is_walked(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8", "192.0.2.1"]
    assert client_ip(_request("10.0.0.1", "1.2.3.4, 198.51.100.7, 192.0.2.1")) == "198.51.100.7"


def test_garbage_from_behind_a_trusted_proxy_falls_back_to_the_peer(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/8"]
    assert client_ip(_request("10.0.0.1", "not-an-address")) == "10.0.0.1"
    assert client_ip(_request("10.0.0.1", "")) == "10.0.0.1"


def test_ipv6_proxies_and_clients(settings):
    settings.TRUSTED_PROXIES = ["::1"]
    assert client_ip(_request("::1", "2001:db8::5")) == "2001:db8::5"


def _get_from(source: str, url: str, headers: dict) -> dict:
    """GET url from the local address `source` (any 127.x address is this machine's)."""
    parsed = urllib.parse.urlparse(url)
    conn = http.client.HTTPConnection(
        parsed.hostname, parsed.port, timeout=10, source_address=(source, 0)
    )
    conn.request("GET", parsed.path, headers=headers)
    return json.loads(conn.getresponse().read())


@pytest.mark.skipif(nginx_binary() is None, reason="nginx is not installed (.ci/run installs it)")
def test_through_a_real_nginx(live_server, settings, tmp_path):
    """A client on 127.0.0.5 forges a hop; nginx on 127.0.0.1 appends the real one."""
    settings.ROOT_URLCONF = "tests.helpers.echo_urls"
    forged = {"X-Forwarded-For": "6.6.6.6"}
    with Nginx(upstream=live_server.url, tmp=tmp_path) as proxy:
        settings.TRUSTED_PROXIES = ["127.0.0.1"]
        assert _get_from("127.0.0.5", proxy.url + "/echo-ip/", forged) == {
            "ip": "127.0.0.5",
            "trusted": True,
        }
        settings.TRUSTED_PROXIES = []  # nobody trusted: the proxy's own address
        assert _get_from("127.0.0.5", proxy.url + "/echo-ip/", forged) == {
            "ip": "127.0.0.1",
            "trusted": False,
        }
    # Straight to the portal, the forged header is ignored even with nginx trusted.
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    assert _get_from("127.0.0.5", live_server.url + "/echo-ip/", forged)["ip"] == "127.0.0.5"
