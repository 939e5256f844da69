"""The layout checks themselves fail on what they are meant to catch (and pass on clean pages)."""
from __future__ import annotations

import pytest

from tests.e2e.layout import (
    assert_labels_do_not_overlap,
    assert_no_horizontal_overflow,
    overlapping_labels,
)

CHART = """<svg width="300" height="60">
  <text x="10" y="30" font-size="14">first label</text>
  <text x="{second_x}" y="30" font-size="14">second label</text>
</svg>"""


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 800, "height": 600})
    page = context.new_page()
    yield page
    context.close()


def test_overlapping_chart_labels_are_found(page):
    page.set_content(CHART.format(second_x=40))
    assert overlapping_labels(page, "svg text") == [("first label", "second label")]
    with pytest.raises(AssertionError, match="overlapping labels"):
        assert_labels_do_not_overlap(page)


def test_labels_apart_pass(page):
    page.set_content(CHART.format(second_x=160))
    assert overlapping_labels(page, "svg text") == []
    assert_labels_do_not_overlap(page)


def test_labels_of_two_charts_are_not_compared(page):
    page.set_content('<svg width="300" height="40"><text x="10" y="30">a label</text></svg>'
                     '<svg width="300" height="40" style="margin-top:-40px;display:block">'
                     '<text x="10" y="30">a label</text></svg>')
    assert overlapping_labels(page, "svg text") == []


def test_horizontal_overflow_is_found(page):
    page.set_content('<div style="width:2000px" class="wide">too wide</div>')
    with pytest.raises(AssertionError, match=r"overflows horizontally.*div\.wide"):
        assert_no_horizontal_overflow(page)


def test_page_within_viewport_passes(page):
    page.set_content('<p style="max-width:100%">fits</p>')
    assert_no_horizontal_overflow(page)
