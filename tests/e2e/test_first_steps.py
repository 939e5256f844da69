"""A newcomer signs up, sees the way to a first expert, finds the production model on the home
page, opens the playground from the top navigation, clicks an example and reads each label's
probability with the label codes explained. The production model is trained in this process
with the engine (no worker) on the bundled sample set."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from experts.domain_guides import STANDARD_GUIDES
from gating import serving
from tests.e2e.layout import assert_readable_layout
from tests.gating.playground_model import production_model


def test_it_leads_a_newcomer_from_sign_up_to_an_answered_example(
        visitor, owner, maintainer, tmp_path, fresh_serving):
    gating = production_model(owner=owner, maintainer=maintainer, folder=tmp_path,
                              domains=("news", "questions"), trained=True)

    nina = visitor("nina")
    page = nina.go("/", "home-anonymous")
    assert_readable_layout(page)
    expect(page.locator("#production")).to_contain_text(f"gating v{gating.number}")
    page.locator(".hero").get_by_role("link", name="Become a contributor").click()
    expect(page.get_by_role("heading", name="Sign up as a contributor")).to_be_visible()
    expect(page.locator("main")).to_contain_text("no approval of the account is needed")
    nina.snap("signup-form")
    assert_readable_layout(page)
    page.get_by_label("Username").fill("nina")
    page.get_by_label("Email").fill("nina@example.org")
    page.locator("#id_password1").fill("a-long-Passphrase-42")
    page.locator("#id_password2").fill("a-long-Passphrase-42")
    page.get_by_role("button", name="Create account").click()

    # After sign-up: no "Become a contributor" any more, but the steps to a first expert.
    expect(page).to_have_url(nina.base_url + "/")
    expect(page.locator(".messages")).to_contain_text("Welcome, nina: you are a contributor now")
    expect(page.get_by_role("link", name="Become a contributor")).to_have_count(0)
    steps = page.locator("#first-steps")
    expect(steps.get_by_role("heading", name="Create your first expert")).to_be_visible()
    expect(steps).to_contain_text(
        "python manage.py train_expert --data my-domain/ --kind head --out my-expert/")
    expect(steps).to_contain_text("What happens next")
    expect(page.locator("#production")).to_contain_text("news-head")
    nina.snap("home-first-steps")
    assert_readable_layout(page)

    page.locator(".account .who").click()
    expect(page.get_by_role("heading", name="Your account")).to_be_visible()
    expect(page.locator("main")).to_contain_text("As a contributor you can create an expert")
    nina.snap("account")
    assert_readable_layout(page)
    page.goto(nina.base_url + "/")

    page.locator(".mainnav").get_by_role("link", name="Requests").click()
    expect(page).to_have_url(re.compile(r"/experts/requests/$"))
    nina.snap("requests")
    assert_readable_layout(page)

    page.locator(".mainnav").get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", name="Predict playground")).to_be_visible()
    examples = page.locator("#examples")
    expect(examples).to_contain_text("location: the answer is a place")
    expect(examples).not_to_contain_text(STANDARD_GUIDES["spam"]["examples"][0])
    nina.snap("playground")
    assert_readable_layout(page)

    question = STANDARD_GUIDES["questions"]["examples"][0]  # the capital city of Australia
    examples.get_by_role("button", name=question).click()
    table = page.locator("#predictions")
    expect(table).to_contain_text(question)
    row = table.locator("tbody tr").first
    bars = row.locator(".bar-row")
    expect(bars.first).to_be_visible()
    nina.snap("playground-answer")
    assert_readable_layout(page)

    # Each bar is as wide as its probability, and together they account for the whole answer.
    values = [float(v.rstrip(" %")) for v in row.locator(".bar-value").all_inner_texts()]
    assert len(values) >= 2 and values == sorted(values, reverse=True)
    assert sum(values) == pytest.approx(100.0, abs=1.0)
    track = bars.first.locator(".bar-track").bounding_box()
    fill = bars.first.locator(".bar-fill").bounding_box()
    assert track and fill and fill["width"] == pytest.approx(track["width"] * values[0] / 100,
                                                             abs=2.0)
    # The answer names its label code and says it in words.
    domain = row.locator("td").nth(1).inner_text().strip()
    label = row.locator(".label-code").inner_text().strip()
    expect(row.locator("td").nth(2)).to_have_text(label)  # the code alone, as scripts read it
    assert values[0] == pytest.approx(100 * float(
        serving.predict([question])["predictions"][0]["confidence"]), abs=0.05)
    words = STANDARD_GUIDES[domain]["label_help"][label]
    expect(row.locator(".label-words").first).to_have_text(words)

    # On a narrow screen the answer and the examples stack and still fit.
    page.set_viewport_size({"width": 800, "height": 900})
    nina.snap("playground-answer-800")
    assert_readable_layout(page)
    page.set_viewport_size({"width": 1280, "height": 900})

    # Her own expert: the 'No version yet' box says how to make one; the path leaves home.
    page.goto(nina.base_url + "/")
    page.locator("#first-steps").get_by_role("link", name="Create an expert").click()
    expect(page.get_by_role("heading", name="New expert")).to_be_visible()
    page.get_by_label("Domain").select_option("questions")
    page.get_by_label("Name").fill("my-first")
    nina.snap("new-expert-form")
    page.get_by_role("button", name="Create expert").click()
    box = page.locator(".card").filter(has=page.get_by_role("heading", name="No version yet"))
    expect(box.get_by_role("link", name="Upload a version")).to_be_visible()
    expect(box.get_by_role("link", name="Train from a dataset")).to_be_visible()
    expect(box).to_contain_text("python manage.py train_expert --data my-domain/")
    nina.snap("expert-no-version")
    assert_readable_layout(page)
    page.goto(nina.base_url + "/")
    expect(page.locator("#first-steps")).to_have_count(0)


def test_it_lets_a_maintainer_write_a_domains_examples_and_label_help(visitor, maintainer):
    from tests.e2e.conftest import log_in
    from tests.helpers import make_domain

    make_domain("intents", labels=["BOOK", "CANCEL"])
    maya = visitor("maya")
    log_in(maya, "maya", "pw-maya")
    page = maya.go("/experts/domains/intents/", "domain-empty")
    expect(page.locator("main")).to_contain_text("No examples written for this domain yet")
    form = page.locator("form.guide-form")
    form.get_by_label("Examples").fill("Book me a table for two tonight\nCancel my 8 pm booking")
    form.get_by_label("Label help").fill("BOOK: make a reservation\nCANCEL: call one off")
    form.get_by_role("button", name="Save examples and label help").click()
    expect(page.locator(".messages")).to_contain_text("Examples and label help of intents saved")
    expect(page.locator(".label-help")).to_contain_text("make a reservation")
    maya.snap("domain-guide-saved")
    assert_readable_layout(page)

    form = page.locator("form.guide-form")
    form.get_by_label("Label help").fill("REFUND: money back")
    form.get_by_role("button", name="Save examples and label help").click()
    expect(page.locator(".refusal")).to_contain_text(
        "label help for REFUND, which this domain does not have; its labels are BOOK, CANCEL")
    maya.snap("domain-guide-refused")
    assert_readable_layout(page)
    # Chromium logs the refused POST (400) as a console error; only that one is expected.
    expected = "the server responded with a status of 400"
    assert any(expected in p for p in maya.problems), maya.problems
    maya.problems[:] = [p for p in maya.problems if expected not in p]

    page.locator(".mainnav").get_by_role("link", name="Playground").click()
    examples = page.locator("#examples")
    expect(examples.get_by_role("button", name="Book me a table for two tonight")).to_be_disabled()
    expect(examples).to_contain_text("call one off")
    maya.snap("playground-without-production")
    assert_readable_layout(page)
