"""The gating dashboard of five experts with long names, in a real browser at a wide and a
narrow width: the charts fill the grid, no label runs into another, nothing overflows, and the
page says in words what the charts and numbers mean."""
from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.e2e.layout import assert_readable_layout
from tests.gating.five_experts import EXPERTS, five_expert_version


@pytest.mark.parametrize("width", [1280, 800])
def test_it_lays_out_the_dashboard_of_five_long_named_experts(visitor, owner, width):
    version, _ = five_expert_version(owner)
    guest = visitor(f"guest-{width}")
    guest.page.set_viewport_size({"width": width, "height": 900})
    page = guest.go(f"/gating/{version.pk}/", f"dashboard-{width}")
    assert_readable_layout(page)

    cards = page.locator(".charts > figure.chart-card")
    expect(cards).to_have_count(6)
    grid = page.locator(".charts").bounding_box()
    assert grid is not None
    boxes = [cards.nth(i).bounding_box() for i in range(cards.count())]
    assert all(b is not None for b in boxes)
    if width == 1280:
        # Two columns that together fill the grid: no empty right half.
        assert boxes[0]["y"] == boxes[1]["y"] and boxes[1]["x"] > boxes[0]["x"]
        assert boxes[1]["x"] + boxes[1]["width"] > grid["x"] + grid["width"] - 2
    else:
        # One column, each chart as wide as the grid.
        assert all(abs(b["width"] - grid["width"]) < 2 for b in boxes)
    for i in range(cards.count()):
        svg = cards.nth(i).locator("svg").bounding_box()
        assert svg and svg["width"] > 0.9 * boxes[i]["width"] - 20, (i, svg, boxes[i])
        expect(cards.nth(i).locator("figcaption")).not_to_be_empty()

    # Every expert is named in full on the page and the three news experts are grouped.
    main = page.locator("main")
    for _, name, _ in EXPERTS:
        expect(main).to_contain_text(name)
    news = page.locator("section.domain-group").filter(
        has=page.get_by_role("heading", name="news"))
    expect(news.locator("tbody tr")).to_have_count(3)
    expect(news).to_contain_text("3 experts compete for news inputs")
    expect(news).to_contain_text("[0.0900, 0.1300]")
    expect(page.locator("#compute-words")).to_contain_text(
        "Routing uses 98.2 % of the dense model's FLOPs (22.0 MFLOPs vs 22.4 MFLOPs per input)")
    params = page.locator("table.params")
    expect(params.locator("tr").filter(has_text="lambda_bal")).to_contain_text("0.01")
    expect(page.locator("#chart-loss .chart-note")).to_have_count(0)
    page.locator("#chart-loss").scroll_into_view_if_needed()
    guest.snap(f"charts-{width}")

    page = guest.go("/gating/", f"index-{width}")
    assert_readable_layout(page)
    expect(page.locator("main")).to_contain_text("v1")


def test_it_points_out_coinciding_lines_and_identical_loads(visitor, owner):
    version, _ = five_expert_version(owner, same_unregularised=True)
    guest = visitor("guest")
    page = guest.go(f"/gating/{version.pk}/", "dashboard-same")
    assert_readable_layout(page)
    expect(page.locator("#chart-load figcaption")).to_contain_text(
        "The regularised and unregularised values are identical")
    expect(page.locator("#chart-loss figcaption")).to_contain_text("coincide")
    expect(page.locator("#loads-identical")).to_be_visible()
    expect(page.locator("#chart-health .chart-note")).to_have_count(1)
    # Four legend entries in the loss chart, each drawn with its own dash pattern.
    dashes = page.locator("#chart-loss polyline").evaluate_all(
        "els => els.map(e => e.getAttribute('stroke-dasharray') || 'solid')")
    assert len(dashes) == 4 and len(set(dashes)) == 4
    page.locator("#chart-loss").scroll_into_view_if_needed()
    guest.snap("charts-same")
