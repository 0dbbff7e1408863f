"""A cheaper path from a Django email message to the bytes an SMTP server receives.

Django builds each message through the `email` package's policy machinery (header objects
parsed and re-folded, a content manager choosing an encoding per part) and flattens it
with a generator: about half of a worker's time per delivery on a local mail server. The
messages the outbox sends have one shape (ASCII headers, one recipient, a text body, HTML
and attachments), so `smtp_bytes` writes that shape directly: quoted-printable text, base64
attachments, CRLF lines, headers folded at spaces. Anything outside it (non-ASCII headers
or addresses, cc/bcc/reply-to, unusual parts) returns None and takes Django's own path;
ESP backends (anymail) always take Django's path, since they read the message object.
tests/test_delivery_batches.py compares both paths part by part.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
import secrets

from django.conf import settings
from django.core.mail import EmailMessage
from django.utils import timezone

#: An addr-spec with nothing that needs quoting or encoding.
_PLAIN_ADDRESS = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9.-]+")
#: Printable ASCII (and space): a header value that needs no encoded words.
_PLAIN_TEXT = re.compile(r"[\x20-\x7e]*")
#: Headers the message itself writes; an extra header naming one takes Django's path.
_OWN_HEADERS = {"from", "to", "cc", "bcc", "reply-to", "date", "subject"}
_OWN_HEADERS |= {"mime-version", "content-type", "content-transfer-encoding"}


def smtp_bytes(message: EmailMessage) -> bytes | None:
    """The message as RFC 5322 bytes with CRLF line ends, or None when it is not of the
    plain shape this module writes (the caller then uses Django's message())."""
    if not _plain(message):
        return None
    text = _text_part("plain", message.body)
    alternatives = [_text_part(m.split("/", 1)[1], c) for c, m in message.alternatives or ()]
    body = _multipart("alternative", [text, *alternatives]) if alternatives else text
    if message.attachments:
        parts = [_attachment(*attachment) for attachment in message.attachments]
        body = _multipart("mixed", [body, *parts])
    headers = [
        b"MIME-Version: 1.0",
        _fold("Subject", str(message.subject)),
        _fold("From", message.from_email),
        _fold("To", ", ".join(message.to)),
        b"Date: " + _date().encode(),
        *(_fold(name, str(value)) for name, value in message.extra_headers.items()),
    ]
    head, _, rest = body.partition(b"\r\n\r\n")
    return b"\r\n".join([*headers, head]) + b"\r\n\r\n" + rest


def _plain(message: EmailMessage) -> bool:
    if message.cc or message.bcc or message.reply_to or len(message.to) != 1:
        return False
    if (message.encoding or settings.DEFAULT_CHARSET).lower() not in ("utf-8", "utf8"):
        return False
    if getattr(message, "content_subtype", "plain") != "plain" or not message.body:
        return False
    addresses = [message.from_email, *message.to]
    if not all(_PLAIN_ADDRESS.fullmatch(str(a)) for a in addresses):
        return False
    headers = {str(k).lower(): str(v) for k, v in message.extra_headers.items()}
    if "message-id" not in headers or _OWN_HEADERS & set(headers):
        return False
    values = [str(message.subject), *headers.values(), *map(str, message.extra_headers)]
    if not all(_PLAIN_TEXT.fullmatch(v) and len(v) < 900 for v in values):
        return False
    for content, mimetype in getattr(message, "alternatives", None) or ():
        if not (mimetype.startswith("text/") and isinstance(content, str)):
            return False
    for attachment in message.attachments:
        if not isinstance(attachment, tuple) or len(attachment) != 3:
            return False  # a MIMEPart (or anything else) is Django's business
        filename, content, mimetype = attachment
        if not (filename and _PLAIN_TEXT.fullmatch(filename) and '"' not in filename):
            return False
        if not isinstance(content, (bytes, str)) or not re.fullmatch(
            r"[\w.+-]+/[\w.+-]+", mimetype
        ):
            return False
    return True


def _date() -> str:
    tz = timezone.get_current_timezone() if settings.EMAIL_USE_LOCALTIME else dt.UTC
    from email.utils import format_datetime

    return format_datetime(dt.datetime.now(tz))


def _fold(name: str, value: str) -> bytes:
    """name: value, folded at spaces so that lines stay within 78 characters where words
    allow (RFC 5322 2.2.3)."""
    lines, line = [], f"{name}:"
    for word in value.split(" "):
        if len(line) + 1 + len(word) > 78 and line != f"{name}:":
            lines.append(line)
            line = ""
        line += " " + word
    lines.append(line)
    return "\r\n".join(lines).encode("ascii")


def _quoted_printable(text: str) -> bytes:
    normalised = text.replace("\r\n", "\n").encode("utf-8")
    encoded = binascii.b2a_qp(normalised, quotetabs=False, istext=True, header=False)
    return encoded.replace(b"\n", b"\r\n")


def _text_part(subtype: str, text: str, *, filename: str | None = None) -> bytes:
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
    head += "Content-Transfer-Encoding: quoted-printable\r\n"
    if filename:
        head += f'Content-Disposition: attachment; filename="{filename}"\r\n'
    return head.encode() + b"\r\n" + _quoted_printable(text)


def _attachment(filename: str, content: bytes | str, mimetype: str) -> bytes:
    maintype = mimetype.split("/", 1)[0]
    if maintype == "text":  # as Django does: text attachments travel as text when they decode
        try:
            text = content if isinstance(content, str) else content.decode()
        except UnicodeDecodeError:
            mimetype = "application/octet-stream"
        else:
            return _text_part(mimetype.split("/", 1)[1], text, filename=filename)
    data = content.encode() if isinstance(content, str) else bytes(content)
    encoded = base64.encodebytes(data).replace(b"\n", b"\r\n")  # 76-character lines
    head = (
        f"Content-Type: {mimetype}\r\nContent-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="{filename}"\r\n'
    )
    return head.encode() + b"\r\n" + encoded


def _multipart(subtype: str, parts: list[bytes]) -> bytes:
    # "=_" never occurs in quoted-printable or base64 text, so no part can hold the boundary.
    boundary = f"=_{secrets.token_hex(16)}"
    head = f'Content-Type: multipart/{subtype};\r\n boundary="{boundary}"\r\n\r\n'.encode()
    delimiter = f"\r\n--{boundary}\r\n".encode()
    body = delimiter.join([b"", *parts])[2:]  # the first delimiter has no CRLF before it
    return head + body + f"\r\n--{boundary}--\r\n".encode()
