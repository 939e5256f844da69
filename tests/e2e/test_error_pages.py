"""The site's own 404 and 500 pages in a browser: branded, readable, with a way back home."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.layout import assert_readable_layout


def test_it_shows_branded_not_found_and_server_error_pages(visitor, settings):
    settings.ROOT_URLCONF = "tests.moecollab_site.error_urls"  # adds a page view that fails
    dora = visitor("dora")
    page = dora.page

    response = page.goto(dora.base_url + "/experts/no-such-expert/")
    assert response is not None and response.status == 404
    expect(page.get_by_role("heading", name="Page not found")).to_be_visible()
    expect(page.locator(".topbar .brand")).to_have_text("MoECollab")
    expect(page.locator("body")).not_to_contain_text("Django")
    dora.snap("not-found")
    assert_readable_layout(page)

    page.get_by_role("link", name="home page").click()
    expect(page.get_by_role("heading", name="Build one model together")).to_be_visible()

    response = page.goto(dora.base_url + "/test-broken/")
    assert response is not None and response.status == 500
    expect(page.get_by_role("heading", name="Something went wrong on our side")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("RuntimeError")
    dora.snap("server-error")
    assert_readable_layout(page)

    # Chromium reports the status of the two pages asked for on purpose as console errors;
    # anything else (a missing stylesheet, a script error) still fails the test.
    expected = {f"console error on {dora.base_url}{path}: Failed to load resource: the server "
                f"responded with a status of {status}"
                for path, status in (("/experts/no-such-expert/", "404 (Not Found)"),
                                     ("/test-broken/", "500 (Internal Server Error)"))}
    assert set(dora.problems) <= expected, dora.problems
    dora.problems.clear()


def test_it_shows_each_accuracy_on_the_experts_list_with_its_n(visitor, owner, news):
    from tests.helpers import make_expert, make_version

    # make_version records n_eval = 40: 33 of 40 right.
    make_version(make_expert(owner, news, "headlines"), accuracy=0.825)
    erin = visitor("erin")
    page = erin.go("/experts/", "experts-list")
    cell = page.locator("td", has=page.locator(".acc"))
    expect(cell).to_contain_text("0.825")
    expect(cell).to_contain_text("n = 40")
    expect(cell.locator(".acc-ci")).to_have_text("[0.681, 0.913]")  # Wilson, 33 of 40
    assert_readable_layout(page)
