"""The API docs page in the browser: every operation shows its summary, and the page links
back to the site."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.layout import assert_readable_layout


def test_it_shows_operation_summaries_and_links_back_to_the_site(visitor):
    reader = visitor("reader")
    page = reader.go("/api/docs/", "docs-loading")
    info = page.locator(".swagger-ui .info")
    expect(info).to_contain_text("MoECollab API")
    # In the description (Swagger UI opens it in a new tab) and in the bar above the docs.
    expect(info.get_by_role("link", name="Back to the MoECollab site")).to_be_visible()
    back = page.get_by_role("navigation", name="Site").get_by_role(
        "link", name="Back to the MoECollab site")
    expect(back).to_be_visible()
    # Each operation line carries its summary beside method and path.
    expect(page.locator(".opblock-summary-description").first).to_be_visible()
    for summary in ("Classify texts", "List experts", "Get your API token", "Cancel a job"):
        expect(page.locator(".opblock-summary-description", has_text=summary)).to_have_count(1)
    reader.snap("docs")
    assert_readable_layout(page)

    page.locator(".opblock-summary", has_text="Classify texts").click()
    expect(page.locator(".opblock-body").first).to_contain_text("top_k")
    reader.snap("predict-operation")
    assert_readable_layout(page)

    back.click()
    expect(page).to_have_url(reader.base_url + "/")
    expect(page.get_by_role("heading", name="Build one model together")).to_be_visible()
    reader.snap("site-home")
