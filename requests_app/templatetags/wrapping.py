"""Line-break hints for long machine text in narrow columns."""

from __future__ import annotations

from django import template
from django.utils.html import conditional_escape
from django.utils.safestring import mark_safe

register = template.Library()


@register.filter
def colon_breaks(value) -> str:
    """The text, escaped, free to wrap after each colon (a colon-separated serial) and
    nowhere else."""
    parts = [conditional_escape(part) for part in str(value or "").split(":")]
    return mark_safe(":<wbr>".join(parts))  # noqa: S308 - every part is escaped above
