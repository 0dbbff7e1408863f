"""`{{ value|visible }}`: requester-controlled text with control and formatting characters
(line breaks, NUL, bidirectional overrides) shown as escapes instead of obeyed."""

from django import template

from .. import pki

register = template.Library()


@register.filter
def visible(value) -> str:
    """The text with \\n, \\x00, \\u202e ... written out; autoescaping still applies."""
    return pki.escape_text("" if value is None else str(value))
