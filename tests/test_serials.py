"""Serial numbers (issue 19): one way to read them (05:35:F2:..., upper-case, whole bytes)
and one rule for typing them (colon hex, plain hex, 0x, `openssl x509 -serial`, decimal)."""

from __future__ import annotations

import subprocess
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.template import Context, Template
from django.urls import reverse

from delivery import services as delivery_services
from requests_app import pki, services
from requests_app.models import Certificate, is_serial, normalize_serial, serial_readings

HIGH_BIT_20_BYTES = 0x8035F2000000000000000000000000000000E13D


@pytest.fixture
def issued(pending_request, agent):
    """A server certificate issued from the queue."""
    return services.approve_request(pending_request, agent=agent)


def clone(cert: Certificate, serial: int) -> Certificate:
    """A certificate row like cert but with the given serial (the CA may have issued it)."""
    return Certificate.objects.create(
        ca=cert.ca,
        serial=pki.serial_hex(serial),
        subject=f"CN=clone-{serial:x}.example.test",
        not_before=cert.not_before,
        not_after=cert.not_after,
        profile=cert.profile,
        pem=cert.pem,
        fingerprint_sha256=uuid.uuid4().hex + uuid.uuid4().hex,
    )


# --- the parser ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        "05:35:F2:E1:3D",
        "05:35:f2:e1:3d",
        "5:35:f2:e1:3d",
        "0535F2E13D",
        "535f2e13d",
        "0x535F2E13D",
        "0X0535f2e13d",
        "serial=0535F2E13D",
        "  serial=0535F2E13D\n",
        "Serial Number: 05:35:f2:e1:3d",
        "05 35 F2 E1 3D",
        "hex:535f2e13d",
        "dec:22379946301",
        "decimal 22379946301",
    ],
)
def test_every_accepted_form_reads_one_number(typed):
    """Colon hex in any case, plain hex, 0x, openssl's serial=, spaces and dec: name one serial."""
    assert pki.parse_serial(typed).values == (0x535F2E13D,)
    assert normalize_serial(typed) == "535f2e13d"


def test_bare_digits_are_read_both_ways():
    """Digits only could be hex or decimal: both readings, hex first."""
    reading = pki.parse_serial("1234")
    assert reading.values == (0x1234, 1234)
    assert reading.ambiguous
    assert serial_readings("1234") == ("1234", "4d2")
    assert pki.parse_serial("0x1234").values == (0x1234,)
    assert pki.parse_serial("dec:1234").values == (1234,)
    assert pki.parse_serial("12:34").values == (0x1234,)  # colons mean hex
    assert pki.parse_serial("7").values == (7,)  # one digit reads the same both ways


@pytest.mark.parametrize(
    ("typed", "why"),
    [
        ("", "Type a serial number"),
        ("   ", "Type a serial number"),
        ("not-a-serial", "hexadecimal"),
        ("0xZZ", "hexadecimal"),
        ("053:5F", "two hexadecimal digits"),
        ("05::35", "two hexadecimal digits"),
        ("dec:12ab", "only the digits"),
        ("serial=", "Type a serial number"),
        ("f" * 65, "at most 64"),
        ("1" * 201, "too long"),
        ("x@example.test", "hexadecimal"),
        ("05:35;F2", "two hexadecimal digits"),
    ],
)
def test_bad_serials_say_why(typed, why):
    """Text that cannot be a serial is refused with a message that says how to write one."""
    with pytest.raises(pki.SerialError, match=why):
        pki.parse_serial(typed)
    assert not is_serial(typed)
    assert serial_readings(typed) == ()


def test_leading_zeros_and_odd_digit_counts():
    """Leading zeros do not change the number; display pads to whole bytes, never odd."""
    assert pki.parse_serial("00:00:05:35").values == (0x535,)
    assert pki.serial_colons(0x535) == "05:35"
    assert pki.serial_colons("535") == "05:35"
    assert pki.serial_colons("0x535") == "05:35"
    assert pki.serial_filename("535") == "0535"
    assert pki.serial_colons(0x5) == "05"
    assert pki.serial_colons("abcdef") == "AB:CD:EF"
    for value in (1, 0xF, 0x100, 0xFFF, 2**159 - 1, HIGH_BIT_20_BYTES):
        digits = pki.serial_filename(value)
        assert len(digits) % 2 == 0 and digits == digits.upper()
        assert pki.parse_serial(pki.serial_colons(value)).values == (value,)
        assert pki.parse_serial(digits).values[0] == value  # hex first for bare digits


def test_twenty_byte_serial_with_the_high_bit():
    """A 20-byte serial with the high bit set reads with or without DER's 00 sign byte and
    shows as 20 pairs, as OpenSSL prints it (no sign byte)."""
    shown = pki.serial_colons(HIGH_BIT_20_BYTES)
    assert shown == "80:35:F2:00:00:00:00:00:00:00:00:00:00:00:00:00:00:00:E1:3D"
    assert len(shown.split(":")) == 20
    assert pki.parse_serial(shown).values == (HIGH_BIT_20_BYTES,)
    assert pki.parse_serial("00:" + shown).values == (HIGH_BIT_20_BYTES,)
    assert pki.parse_serial(f"serial={HIGH_BIT_20_BYTES:X}").values == (HIGH_BIT_20_BYTES,)
    assert pki.parse_serial(f"dec:{HIGH_BIT_20_BYTES}").values == (HIGH_BIT_20_BYTES,)


def test_display_matches_openssl(issued, tmp_path):
    """serial_filename is what `openssl x509 -serial` prints; serial_colons is its -text form
    in upper case."""
    path = tmp_path / "cert.pem"
    path.write_text(issued.pem)
    printed = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-serial", "-noout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert printed == f"serial={issued.serial_filename}"
    text = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-text", "-noout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert issued.serial_colons.lower() in text


# --- lookups ------------------------------------------------------------------------


def test_decimal_is_found_when_only_that_reading_exists(issued):
    """A decimal serial finds the certificate; the hex reading of the same digits finds none."""
    decimal = str(int(issued.serial, 16))
    assert Certificate.objects.by_serial(decimal) == issued
    assert Certificate.objects.by_serial(f"dec:{decimal}") == issued
    assert Certificate.objects.by_serial(f"0x{decimal}") is None


def test_both_readings_existing_is_ambiguous(issued):
    """Digits naming two certificates are refused with both, until 0x or dec: chooses."""
    as_hex = clone(issued, 0x1234)
    as_decimal = clone(issued, 1234)
    with pytest.raises(pki.AmbiguousSerial) as caught:
        Certificate.objects.by_serial("1234")
    message = str(caught.value)
    assert "12:34" in message and "04:D2" in message and "0x1234" in message
    assert "dec:1234" in message
    assert Certificate.objects.by_serial("0x1234") == as_hex
    assert Certificate.objects.by_serial("dec:1234") == as_decimal
    assert set(Certificate.objects.with_serial("1234")) == {as_hex, as_decimal}
    assert Certificate.objects.by_serial(0x1234) == as_hex  # an int is exact
    as_decimal.delete()
    assert Certificate.objects.by_serial("1234") == as_hex


def test_url_takes_any_form_and_is_written_in_one(client, issued):
    """Certificate URLs are written upper-case without colons and answer to every form."""
    url = reverse("certificate_detail", args=[issued.serial])
    assert url == f"/certificates/{issued.serial_filename}/"
    assert reverse("certificate_detail", args=[issued.serial_colons]) == url
    for typed in (
        issued.serial,
        issued.serial_colons,
        issued.serial_colons.lower(),
        f"0x{issued.serial}",
        issued.serial_filename,
    ):
        response = client.get(f"/certificates/{typed}/")
        assert response.status_code == 200, typed
    assert client.get("/certificates/not-a-serial/").status_code == 404
    assert client.get("/certificates/0xdeadbeef/").status_code == 404


def test_url_with_bare_digits_reads_hex(client, issued):
    """In a URL bare digits are hex (the form we write), never the decimal reading."""
    digits = clone(issued, 0x1234)
    clone(issued, 1234)
    assert reverse("certificate_detail", args=[digits.serial]) == "/certificates/1234/"
    response = client.get("/certificates/1234/")
    assert response.status_code == 200
    assert "12:34" in response.content.decode()


# --- the EE lookup ------------------------------------------------------------------


def _lookup(client, typed):
    return client.get(reverse("certificate_lookup"), {"serial": typed})


def test_lookup_takes_openssl_output(client, issued, tmp_path):
    """The output of `openssl x509 -serial -noout`, pasted whole, finds the certificate."""
    path = tmp_path / "cert.pem"
    path.write_text(issued.pem)
    printed = subprocess.run(
        ["openssl", "x509", "-in", str(path), "-serial", "-noout"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    response = _lookup(client, printed)
    assert response.status_code == 302
    assert response["Location"] == reverse("certificate_detail", args=[issued.serial])


@pytest.mark.parametrize("style", ["0x", "0X-upper", "decimal", "dec:", "colons-lower"])
def test_lookup_takes_dogtag_forms(client, issued, style):
    """0x hex and decimal (as Dogtag users type them) find the certificate."""
    typed = {
        "0x": f"0x{issued.serial}",
        "0X-upper": f"0X{issued.serial.upper()}",
        "decimal": str(int(issued.serial, 16)),
        "dec:": f"dec:{int(issued.serial, 16)}",
        "colons-lower": issued.serial_colons.lower(),
    }[style]
    response = _lookup(client, typed)
    assert response.status_code == 302
    assert response["Location"] == f"/certificates/{issued.serial_filename}/"


def test_lookup_asks_when_digits_name_two(client, issued):
    """Digits naming two certificates answer with both readings and how to choose."""
    clone(issued, 0x1234)
    clone(issued, 1234)
    response = _lookup(client, "1234")
    html = response.content.decode()
    assert response.status_code == 400
    assert "12:34" in html and "04:D2" in html and "0x1234" in html and "dec:1234" in html
    assert _lookup(client, "0x1234")["Location"] == "/certificates/1234/"
    assert _lookup(client, "dec:1234")["Location"] == "/certificates/04D2/"


def test_lookup_refuses_bad_serials_and_misses_clearly(client, issued):
    """A bad serial is a form error (400); a good one nobody has is the not-found page."""
    for typed in ("05:35:ZZ", "053:5F", "dec:0x12"):
        response = _lookup(client, typed)
        assert response.status_code == 400, typed
    response = _lookup(client, "DE:AD:BE:EF")
    assert response.status_code == 404
    assert "No certificate has that serial number" in response.content.decode()


# --- the one format everywhere ------------------------------------------------------


def _assert_one_format(text: str, cert: Certificate) -> None:
    assert cert.serial_colons in text
    assert cert.serial not in text  # our stored lower-case form, no colons
    assert cert.serial_colons.lower() not in text


def test_pages_show_one_format(client, agent_client, issued):
    """The status page, the public and agent certificate pages, the issued page and the
    queue show the colon serial with a Copy button, never the stored form."""
    req = issued.request
    pages = {
        "status": client.get(req.get_absolute_url()),
        "certificate": client.get(reverse("certificate_detail", args=[issued.serial])),
        "agent-certificate": agent_client.get(reverse("agent:certificate", args=[issued.serial])),
        "issued": agent_client.get(reverse("agent:certificate_issued", args=[req.public_id])),
        "queue": agent_client.get(reverse("agent:request_list") + "?status=complete"),
    }
    for name, response in pages.items():
        assert response.status_code == 200, name
        html = response.content.decode()
        _assert_one_format(html.replace("<wbr>", ""), issued)
        assert '<span class="serial">' in html, name
        assert ":<wbr>" in html, name  # breakable after a colon on a phone
    # The details page: its tables (the history's raw event data is the queue work's).
    details = agent_client.get(req.get_agent_url()).content.decode()
    assert issued.serial_colons in details.replace("<wbr>", "")
    for name in ("status", "certificate", "agent-certificate", "issued"):
        assert f'data-copy-text="{issued.serial_colons}"' in pages[name].content.decode(), name


def test_odd_digit_serial_is_padded_on_its_page(agent_client, issued):
    """A serial with an odd number of hex digits shows a leading 0, never an odd digit."""
    odd = clone(issued, 0x535F2E13D)  # nine hex digits
    url = reverse("agent:certificate", args=[odd.serial])
    assert url == "/agent/certificates/0535F2E13D/"
    html = agent_client.get(url).content.decode()
    assert "05:<wbr>35:<wbr>F2:<wbr>E1:<wbr>3D" in html
    assert 'data-copy-text="05:35:F2:E1:3D"' in html
    assert "535f2e13d" not in html


def test_flash_message_after_approval_shows_one_format(agent_client, pending_request):
    """The agent's message after approving names the serial in the one format."""
    response = agent_client.post(
        reverse("agent:approve", args=[pending_request.public_id]), follow=True
    )
    cert = Certificate.objects.get(request=pending_request)
    shown = [str(m) for m in response.context["messages"]]
    assert any(cert.serial_colons in m for m in shown), shown
    assert not any(cert.serial in m for m in shown)


def test_downloads_are_named_by_the_file_form(client, issued):
    """Every download's file name is the upper-case serial without colons (as openssl
    -serial prints it)."""
    names = {}
    for fmt, suffix in [
        ("pem", ".pem"),
        ("der", ".cer"),
        ("p7b", ".p7b"),
        ("chain", "-fullchain.pem"),
    ]:
        response = client.get(reverse("certificate_download", args=[issued.serial, fmt]))
        assert response.status_code == 200
        names[fmt] = response["Content-Disposition"]
        assert f'filename="{issued.serial_filename}{suffix}"' in names[fmt], names[fmt]
        assert issued.serial not in names[fmt]
    imported = client.get(reverse("certificate_import", args=[issued.serial_colons]))
    assert f"{issued.serial_filename}.crt" in imported["Content-Disposition"]


def test_mail_shows_one_format(smtp_server, issued, agent, django_capture_on_commit_callbacks):
    """The certificate mail's subject and text show the colon serial; its attachments are
    named by the file form."""
    with django_capture_on_commit_callbacks(execute=True):
        delivery_services.send_certificate(issued, method="certificate", actor=agent)
    message = smtp_server.messages[-1]
    # The subject names the request (short, never folded), the body the serial.
    assert issued.request.display_id in message["Subject"]
    assert issued.serial not in message["Subject"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    for body in (text, html):
        assert issued.serial_colons in body
        assert issued.serial not in body
    names = {part.get_filename() for part in message.iter_attachments()}
    assert {f"{issued.serial_filename}.pem", f"{issued.serial_filename}-chain.p7b"} <= names
    assert all(name.startswith(issued.serial_filename) for name in names)


def test_template_filter_forms():
    """|serial gives text, a breakable span, a span with Copy, and the file form."""
    template = Template(
        '{{ s|serial }}|{{ s|serial:"wrap" }}|{{ s|serial:"copy" }}|{{ s|serial:"file" }}'
    )
    text, wrap, copy, file = template.render(Context({"s": "535f2"})).split("|")
    assert text == "05:35:F2"
    assert wrap == '<span class="serial">05:<wbr>35:<wbr>F2</span>'
    assert 'data-copy-text="05:35:F2"' in copy and copy.startswith(wrap)
    assert file == "0535F2"
    assert Template("{{ s|serial }}").render(Context({"s": None})) == ""


# --- other surfaces -----------------------------------------------------------------


def test_admin_search_takes_every_form(admin_client, issued):
    """The admin certificate and request lists find the serial typed in any accepted form."""
    clone(issued, 0x1234)  # another row, which no search below may list
    for typed in (issued.serial_colons, f"serial={issued.serial_filename}", f"0x{issued.serial}"):
        for url, shown in (
            (reverse("admin:requests_app_certificate_changelist"), issued.serial_colons),
            (
                reverse("admin:requests_app_certificaterequest_changelist"),
                issued.request.display_id,
            ),
        ):
            response = admin_client.get(url, {"q": typed})
            html = response.content.decode()
            assert response.status_code == 200
            assert shown in html, (typed, url)
            assert "12:34" not in html


def test_agent_find_asks_when_digits_name_two(agent_client, issued):
    """The queue's search box says so when digits name two certificates, and opens
    neither (the old Find address leads to the same search)."""
    digits = "1234567890123456"
    clone(issued, int(digits, 16))
    clone(issued, int(digits))
    response = agent_client.get(reverse("agent:find"), {"q": digits}, follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("agent:request_list"))
    shown = " ".join(str(m) for m in response.context["messages"])
    assert f"0x{digits}" in shown and f"dec:{digits}" in shown


def test_send_view_with_colons_in_url(agent_client, issued, settings):
    """The delivery send action answers at a URL with colons (the serial as shown)."""
    response = agent_client.post(
        f"/agent/deliveries/send/{issued.serial_colons}/", {"method": "link"}
    )
    assert response.status_code == 302
    missing = agent_client.post("/agent/deliveries/send/DE:AD:BE:EF/", {"method": "link"})
    assert missing.status_code == 302


def _run(*args) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_commands_take_every_form_and_print_one(issued, tmp_path):
    """export, revoke and release_hold take openssl's and Dogtag's forms and print colons."""
    out = tmp_path / "c.pem"
    printed = _run("export_certificate", f"serial={issued.serial_filename}", "--output", str(out))
    assert issued.serial_colons in printed and issued.serial not in printed
    assert out.read_text() == issued.pem
    held = _run("revoke_certificate", f"0x{issued.serial}", "--reason", "certificateHold")
    assert issued.serial_colons in held
    released = _run("release_hold", f"dec:{int(issued.serial, 16)}")
    assert issued.serial_colons in released
    listed = _run("list_certificates")
    assert issued.serial_colons in listed and issued.serial not in listed
    data = _run("list_certificates", "--json")
    assert f'"serial": "{issued.serial}"' in data  # --json keeps its keys and values


def test_commands_refuse_bad_and_ambiguous_serials(issued):
    """A bad serial or digits naming two certificates is a CommandError that changes nothing."""
    clone(issued, 0x1234)
    clone(issued, 1234)
    with pytest.raises(CommandError, match="hexadecimal"):
        _run("revoke_certificate", "05:35:ZZ", "--reason", "keyCompromise")
    with pytest.raises(CommandError, match="dec:1234"):
        _run("revoke_certificate", "1234", "--reason", "keyCompromise")
    with pytest.raises(CommandError, match="dec:1234"):
        _run("send_certificate", "1234")
    assert not Certificate.objects.filter(status=Certificate.Status.REVOKED).exists()
    assert "04:D2" in _run("revoke_certificate", "dec:1234", "--reason", "keyCompromise")
