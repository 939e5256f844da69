"""Template helpers of the model-card pages: a contributor's markdown made safe, and an accuracy
shown with its n and 95 % Wilson interval (gating.ml.stats, the one implementation)."""
from __future__ import annotations

import markdown as markdown_lib
import nh3
from django import template
from django.template.defaultfilters import floatformat
from django.utils.html import format_html
from django.utils.safestring import SafeString, mark_safe

from gating.ml.stats import accuracy_interval as wilson_of_accuracy

register = template.Library()

# What a description may use: text structure, code, tables and links; nothing that runs,
# loads (no img: a tracking pixel is a request on the reader's behalf) or restyles the page.
ALLOWED_TAGS = {"p", "br", "hr", "strong", "em", "b", "i", "code", "pre", "blockquote",
                "ul", "ol", "li", "a", "h1", "h2", "h3", "h4", "h5", "h6",
                "table", "thead", "tbody", "tr", "th", "td"}
ALLOWED_ATTRIBUTES = {"a": {"href", "title"}}
URL_SCHEMES = {"http", "https", "mailto"}  # no javascript:, data:, vbscript:


def markdown_to_safe_html(text: str) -> str:
    """Markdown rendered, then sanitised: raw HTML in the source gets no more than the tag set."""
    html = markdown_lib.markdown(text or "", extensions=["fenced_code", "tables", "sane_lists"])
    return nh3.clean(html, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES,
                     url_schemes=URL_SCHEMES, link_rel="nofollow noopener noreferrer")


@register.filter
def markdown_safe(text: str) -> SafeString:
    return mark_safe(markdown_to_safe_html(text))  # nh3 has sanitised it


def _count(n) -> int | None:
    try:
        n = int(n)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


def accuracy_interval(value, n) -> list[float] | None:
    """The 95 % Wilson interval of an accuracy measured on n rows (None without n)."""
    n = _count(n)
    if value is None or n is None:
        return None
    return wilson_of_accuracy(float(value), n)


@register.simple_tag
def accuracy(value, n=None, digits: int = 3) -> SafeString:
    """'0.850 [0.709, 0.929] n = 40': an accuracy never stands without its n and interval."""
    if value is None:
        return mark_safe("–")
    # floatformat, as the rest of the page rounds (0.8125 -> 0.813, half up)
    shown = floatformat(value, int(digits))
    interval = accuracy_interval(value, n)
    if interval is None:
        return format_html('<span class="acc">{}</span> <span class="acc-n muted">'
                           "(n not recorded, so no interval)</span>", shown)
    low, high = (floatformat(x, int(digits)) for x in interval)
    return format_html(
        '<span class="acc">{}</span> <span class="acc-ci" title="95 % Wilson interval">'
        "[{}, {}]</span> <span class=\"acc-n muted\">n&nbsp;=&nbsp;{}</span>",
        shown, low, high, _count(n))


@register.filter
def signed(value, digits: int = 3) -> str:
    """+0.042 / -0.010: a credit or a difference with its sign."""
    if value is None:
        return "–"
    return f"{float(value):+.{int(digits)}f}"
