"""Three OCSP clients against a live portal: GnuTLS's `ocsptool`, `openssl ocsp` and NSS's
`vfychain`, each accepting the good answer and refusing the certificate once revoked.

The portal's pages are on https (SITE_URL) while the revocation URLs in certificates are on
http (REVOCATION_BASE_URL): NSS fetches the OCSP URL from the certificate's
authorityInfoAccess itself, and never over https.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509

from requests_app import pki, services
from tests.helpers.csrs import make_csr

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = ("ocsptool", "openssl", "vfychain")


def _run(args: list[str]) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture
def portal(live_server, settings):
    """A live portal whose pages are on https and whose revocation URLs are on http."""
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    assert not missing, f"install gnutls-bin and libnss3-tools (missing {missing})"
    base = f"http://127.0.0.1:{live_server.thread.port}"  # pkilint wants an IP or dotted host
    settings.SITE_URL = "https://ca.example.com"
    settings.REVOCATION_BASE_URL = base
    return base


@pytest.fixture
def files(tmp_path, ca):
    """ca.pem and ca.der of the default CA, in tmp_path."""
    (tmp_path / "ca.pem").write_text(ca.certificate_pem)
    (tmp_path / "ca.der").write_bytes(pki.to_der(ca.certificate))
    return tmp_path


def _issue(directory: Path):
    cert = services.issue_certificate(
        profile="server", csr=make_csr(cn="www.example.test"), requester_email="ops@example.test"
    )
    (directory / "leaf.pem").write_text(cert.pem)
    (directory / "leaf.der").write_bytes(pki.to_der(cert.x509))
    return cert


def _ocsp_url(cert) -> str:
    aia = cert.x509.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
    return next(
        d.access_location.value
        for d in aia
        if d.access_method == x509.AuthorityInformationAccessOID.OCSP
    )


def _ocsptool(directory: Path, url: str) -> subprocess.CompletedProcess:
    """Ask with ocsptool, then verify the saved answer against ca.pem as trust anchor."""
    answer = directory / "answer.der"
    answer.unlink(missing_ok=True)
    ask = _run(
        [
            "ocsptool",
            f"--ask={url}",
            "--load-issuer",
            str(directory / "ca.pem"),
            "--load-cert",
            str(directory / "leaf.pem"),
            "--outfile",
            str(answer),
            "--no-nonce",
        ]
    )
    assert answer.exists(), ask.stdout + ask.stderr
    return _run(
        [
            "ocsptool",
            "-e",
            "--load-trust",
            str(directory / "ca.pem"),
            "--load-cert",
            str(directory / "leaf.pem"),
            "--infile",
            str(answer),
        ]
    )


def _openssl(directory: Path, url: str) -> subprocess.CompletedProcess:
    ca_pem, leaf_pem = directory / "ca.pem", directory / "leaf.pem"
    return _run(
        f"openssl ocsp -issuer {ca_pem} -cert {leaf_pem} -url {url} -CAfile {ca_pem}".split()
    )


def _nss_db(directory: Path) -> str:
    """An NSS database trusting ca.pem as a CA (NSS finds an OCSP signer in its database,
    not among vfychain's -t anchors)."""
    db = directory / "nssdb"
    if not db.exists():
        db.mkdir()
        for args in (
            ["-N", "--empty-password"],
            ["-A", "-n", "ca", "-t", "CT,C,C", "-i", str(directory / "ca.pem")],
        ):
            result = _run(["certutil", "-d", f"sql:{db}", *args])
            assert result.returncode == 0, result.stdout + result.stderr
    return f"sql:{db}"


def _vfychain(directory: Path, *, fail_if_no_info: bool = True) -> subprocess.CompletedProcess:
    """NSS's chain check with OCSP for the leaf, fetched from its AIA URL. With
    fail_if_no_info, a missing or unverifiable answer fails the check (reported, like a
    revocation, as error -8180); without, only an answer that verifies and says revoked does."""
    flags = ["-s", "failIfNoInfo"] if fail_if_no_info else []
    return _run(
        [
            "vfychain",
            "-d",
            _nss_db(directory),
            "-pp",
            "-u",
            "1",
            "-g",
            "leaf",
            "-h",
            "requireFreshInfo",
            "-m",
            "ocsp",
            *flags,
            str(directory / "leaf.der"),
        ]
    )


def test_certificates_name_http_revocation_urls_while_the_site_is_https(portal, files):
    """With SITE_URL on https, AIA (OCSP, caIssuers) and the CRL DP use REVOCATION_BASE_URL."""
    cert = _issue(files)
    assert _ocsp_url(cert) == f"{portal}/ocsp"
    ext = cert.x509.extensions
    aia = ext.get_extension_for_class(x509.AuthorityInformationAccess).value
    assert all(d.access_location.value.startswith("http://") for d in aia)
    points = ext.get_extension_for_class(x509.CRLDistributionPoints).value
    assert points[0].full_name[0].value == f"{portal}/ca/{cert.ca_id}/crl.crl"


@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
def test_ocsptool_accepts_good_and_refuses_revoked(portal, files, delegated):
    """GnuTLS verifies the CA-signed answer against the CA as trust anchor (byName responder
    ID) and the delegated one (certificate included); after revocation it says revoked."""
    if delegated:
        services.create_ocsp_responder(validity_days=7)
    cert = _issue(files)
    url = _ocsp_url(cert)
    good = _ocsptool(files, url)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Verifying OCSP Response: Success." in good.stdout
    assert "Cert Status: good" in good.stdout or "Certificate Status: good" in good.stdout
    services.revoke_certificate(cert, reason="keyCompromise", actor=None)
    revoked = _ocsptool(files, url)
    assert "Verifying OCSP Response: Success." in revoked.stdout, revoked.stdout
    assert "Certificate Status: revoked" in revoked.stdout


def test_ocsptool_refuses_an_answer_from_another_ca(portal, files):
    """Trusting another CA, GnuTLS refuses the answer (the check is real)."""
    cert = _issue(files)
    _, other = pki.create_ca("CN=Other Root,C=US", key_type="p256")
    good = _ocsptool(files, _ocsp_url(cert))
    assert "Success" in good.stdout
    (files / "ca.pem").write_text(pki.to_pem(other))
    answer = _run(
        [
            "ocsptool",
            "-e",
            "--load-trust",
            str(files / "ca.pem"),
            "--infile",
            str(files / "answer.der"),
        ]
    )
    assert answer.returncode != 0
    assert "Verifying OCSP Response: Success." not in answer.stdout


@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
def test_openssl_ocsp_accepts_good_and_refuses_revoked(portal, files, delegated):
    """`openssl ocsp` verifies the answer (byName or delegated) and reports the status."""
    if delegated:
        services.create_ocsp_responder(validity_days=7)
    cert = _issue(files)
    url = _ocsp_url(cert)
    good = _openssl(files, url)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Response verify OK" in good.stderr
    assert "leaf.pem: good" in good.stdout
    services.revoke_certificate(cert, reason="keyCompromise", actor=None)
    revoked = _openssl(files, url)
    assert "Response verify OK" in revoked.stderr
    assert "leaf.pem: revoked" in revoked.stdout


@pytest.mark.parametrize("delegated", [False, True], ids=["ca-signed", "delegated"])
def test_nss_vfychain_fetches_ocsp_and_refuses_revoked(portal, files, delegated):
    """NSS fetches the http OCSP URL named in the certificate: good passes the chain check
    even when an answer is required, and revoked fails it even when it is not (so NSS did get
    and verify an answer that says revoked)."""
    if delegated:
        services.create_ocsp_responder(validity_days=7)
    cert = _issue(files)
    good = _vfychain(files, fail_if_no_info=True)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Chain is good!" in good.stdout + good.stderr
    services.revoke_certificate(cert, reason="keyCompromise", actor=None)
    revoked = _vfychain(files, fail_if_no_info=False)
    assert revoked.returncode != 0
    assert "-8180: Peer's Certificate has been revoked" in revoked.stdout + revoked.stderr


def test_nss_vfychain_refuses_when_the_ocsp_url_is_https(portal, files, settings):
    """The old default (revocation URLs on https) fails NSS's required OCSP check; this is
    what REVOCATION_BASE_URL on http prevents."""
    settings.REVOCATION_BASE_URL = portal.replace("http://", "https://")
    settings.PREISSUANCE_LINT = True
    _issue(files)
    result = _vfychain(files)
    assert result.returncode != 0
    assert "Chain is good!" not in result.stdout + result.stderr
