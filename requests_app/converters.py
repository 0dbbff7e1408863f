"""The `serial` path converter: every URL that names a certificate by serial takes any form
a person types (05:35:f2:..., 0x..., dec:...) and is written in one form (0535F2...)."""

from __future__ import annotations

from django.urls import register_converter

from . import pki


class SerialConverter:
    regex = r"[^/]+"

    def to_python(self, value: str) -> str:
        # Explicit hex (0x...) for the view: in a URL, bare digits are hex (the form we
        # write), never the decimal reading. Text that is no serial passes unchanged, so
        # the view answers with its own not-found page.
        try:
            return f"0x{pki.serial_hex(pki.parse_serial(value).values[0])}"
        except pki.SerialError:
            return value

    def to_url(self, value: str | int) -> str:
        try:
            return pki.serial_filename(value)
        except ValueError:
            return str(value)


register_converter(SerialConverter, "serial")
