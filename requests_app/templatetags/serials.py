"""`{{ cert|serial }}`: the one way a serial number is shown, in pages, mails and file names.

    {{ cert|serial }}         05:35:F2:...:3D (plain text: titles, mails, messages)
    {{ cert|serial:"wrap" }}  the same in <span class="serial">, breakable after each colon
    {{ cert|serial:"copy" }}  wrapped, with a Copy button (static copy.js; no inline script)
    {{ cert|serial:"file" }}  0535F2...3D, for file names (no colons)

The value is a Certificate, an int or our stored lower-case hex (pki.serial_colons).
"""

from __future__ import annotations

from django import template
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString

from .. import pki

register = template.Library()

FORMS = ("text", "wrap", "copy", "file")


@register.filter
def serial(value, form: str = "text") -> str:
    """The serial of value in the given form (see the module docstring)."""
    if value is None or value == "":
        return ""
    number = getattr(value, "serial", value)
    if form not in FORMS:
        raise template.TemplateSyntaxError(f"serial: unknown form {form!r}, use one of {FORMS}")
    if form == "file":
        return pki.serial_filename(number)
    text = pki.serial_colons(number)
    if form == "text":
        return text
    return serial_html(text, copy=form == "copy")


def serial_html(colons: str, *, copy: bool) -> SafeString:
    """A colon serial that may break after each colon on narrow screens, and its button."""
    pairs = colons.split(":")
    inner = escape(pairs[0])
    for pair in pairs[1:]:
        inner = format_html("{}:<wbr>{}", inner, pair)
    span = format_html('<span class="serial">{}</span>', inner)
    if not copy:
        return span
    return format_html(
        '{} <button type="button" class="copy copy-serial" data-copy-text="{}" '
        'aria-label="Copy serial number {}">Copy</button>',
        span,
        colons,
        colons,
    )
