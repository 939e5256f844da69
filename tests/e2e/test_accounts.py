"""Sign up, log out and log in again in the browser."""
from __future__ import annotations

from playwright.sync_api import expect

from tests.e2e.conftest import log_in


def test_it_signs_up_logs_out_and_logs_back_in(visitor):
    carol = visitor("carol")
    page = carol.go("/", "home-anonymous")
    expect(page.get_by_role("heading", name="Build one model together")).to_be_visible()
    # The stylesheet is applied: the top bar is dark, not the browser's default white.
    assert page.locator(".topbar").evaluate("e => getComputedStyle(e).backgroundColor") not in (
        "rgba(0, 0, 0, 0)", "rgb(255, 255, 255)")

    page.locator(".account").get_by_role("link", name="Sign up").click()
    expect(page.get_by_role("heading", name="Sign up as a contributor")).to_be_visible()
    carol.snap("signup-form")
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Email").fill("carol@example.org")
    page.locator("#id_password1").fill("a-long-Passphrase-42")
    page.locator("#id_password2").fill("a-long-Passphrase-41")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator(".errorlist, ul.errorlist")).to_contain_text("didn’t match")
    carol.snap("signup-mismatch")

    page.locator("#id_password1").fill("a-long-Passphrase-42")
    page.locator("#id_password2").fill("a-long-Passphrase-42")
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(carol.base_url + "/")
    expect(page.locator(".account .who")).to_have_text("carol")
    expect(page.locator(".account").get_by_role("link", name="Sign up")).to_have_count(0)
    carol.snap("home-signed-up")

    page.get_by_role("button", name="Log out").click()
    expect(page.locator(".account").get_by_role("link", name="Log in")).to_be_visible()
    expect(page.locator(".account .who")).to_have_count(0)
    carol.snap("home-logged-out")

    page.locator(".account").get_by_role("link", name="Log in").click()
    page.get_by_label("Username").fill("carol")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.locator("form")).to_contain_text("Please enter a correct username and password")
    carol.snap("login-refused")

    log_in(carol, "carol", "a-long-Passphrase-42")
    expect(page).to_have_url(carol.base_url + "/")
    page.get_by_role("link", name="Experts", exact=True).first.click()
    expect(page.get_by_role("link", name="New expert")).to_be_visible()
    carol.snap("experts-index")
