"""Layout checks for the browser tests: a page must not overflow horizontally and the labels of
a chart must not overlap. Both measure the rendered boxes in Chromium, so they fail on what a
reader would see, not on markup."""
from __future__ import annotations

from playwright.sync_api import Page

# Boxes that touch by a fraction of a pixel (anti-aliasing, sub-pixel layout) are not overlaps.
_SLACK_PX = 0.5

_OVERFLOW_JS = """() => {
  const root = document.documentElement;
  const wide = [];
  for (const el of document.body.querySelectorAll('*')) {
    const r = el.getBoundingClientRect();
    const fixed = getComputedStyle(el).position === 'fixed';
    if (r.width > 0 && r.right > root.clientWidth + 1 && !fixed) {
      // report the outermost offender only, with something to find it by
      if (!wide.some(w => w.el.contains(el))) wide.push({el, right: r.right});
    }
  }
  const name = el => el.tagName.toLowerCase() + (el.id ? '#' + el.id : '')
    + (typeof el.className === 'string' && el.className.trim()
       ? '.' + el.className.trim().split(/\\s+/).join('.') : '');
  return {scroll: root.scrollWidth, client: root.clientWidth,
          wide: wide.slice(0, 5).map(w => `${name(w.el)} right=${Math.round(w.right)}`)};
}"""

_BOXES_JS = """(selector) => Array.from(document.querySelectorAll(selector))
  .filter(el => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; })
  .map(el => { const r = el.getBoundingClientRect();
    return {text: (el.textContent || '').trim().slice(0, 40), x0: r.left, y0: r.top,
            x1: r.right, y1: r.bottom, group: el.closest('svg, figure, [data-chart]') ?
            Array.from(document.querySelectorAll('svg, figure, [data-chart]'))
              .indexOf(el.closest('svg, figure, [data-chart]')) : -1}; })"""


def assert_no_horizontal_overflow(page: Page) -> None:
    """The page is no wider than the viewport: nothing forces a horizontal scroll bar."""
    found = page.evaluate(_OVERFLOW_JS)
    assert found["scroll"] <= found["client"] + 1, (
        f"{page.url} overflows horizontally: {found['scroll']} px wide in a {found['client']} px "
        f"viewport; widest elements: {found['wide']}")


def overlapping_labels(page: Page, selector: str) -> list[tuple[str, str]]:
    """Pairs of visible elements matching `selector`, inside the same chart, whose boxes
    intersect by more than half a pixel in both directions."""
    boxes = page.evaluate(_BOXES_JS, selector)
    pairs = []
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            if a["group"] != b["group"]:
                continue
            dx = min(a["x1"], b["x1"]) - max(a["x0"], b["x0"])
            dy = min(a["y1"], b["y1"]) - max(a["y0"], b["y0"])
            if dx > _SLACK_PX and dy > _SLACK_PX:
                pairs.append((a["text"], b["text"]))
    return pairs


def assert_labels_do_not_overlap(page: Page, selector: str = "svg text") -> None:
    pairs = overlapping_labels(page, selector)
    assert not pairs, f"{page.url}: overlapping labels ({selector}): {pairs[:10]}"


def assert_readable_layout(page: Page, label_selector: str = "svg text") -> None:
    """Both checks at once, for every page a layout test visits."""
    assert_no_horizontal_overflow(page)
    assert_labels_do_not_overlap(page, label_selector)
