"""In a real browser: a version's model card (badges, safe description, checks once, usage,
try-it box) and the upload form, whose progress bar shows only while an upload runs."""
from __future__ import annotations

from playwright.sync_api import expect

from experts.leaderboards import leaderboards_refresh
from experts.models import ExpertVersion
from tests.e2e.conftest import log_in
from tests.e2e.layout import assert_readable_layout
from tests.experts.test_leaderboards import production_with
from tests.helpers import make_artifact, make_expert, make_version

DESCRIPTION = """Sorts **wire stories** into four topics; see the [MoECollab paper](https://arxiv.org/abs/2503.12592).

<script>window.hacked = true</script><img src=x onerror="window.hacked = true">

| topic | examples |
|---|---|
| World | elections, summits |
| Sports | scores, transfers |
"""


def _expect_only_refusal_logged(v, status: int) -> None:
    """Chromium logs the refused request itself as a console error; that one is expected,
    anything else (a script error, another failed request) still fails the test."""
    expected = f"the server responded with a status of {status}"
    assert any(expected in p for p in v.problems), v.problems
    v.problems[:] = [p for p in v.problems if expected not in p]


def test_it_shows_a_full_model_card_for_a_version(visitor, owner, stranger, maintainer, news,
                                                  tmp_path):
    expert = make_expert(owner, news, "wire-topics", description=DESCRIPTION)
    make_artifact(tmp_path / "art")
    version = make_version(expert, accuracy=0.85, artifact=tmp_path / "art")
    checks = [{"name": n, "ok": True, "message": "ok", "where": where}
              for where in ("upload", "worker")
              for n in ("file sizes", "manifest json", "manifest schema", "backbone",
                        "safetensors header", "tensors match manifest",
                        "tensors match architecture", "finite values")]
    checks.append({"name": "outputs on real inputs", "ok": True, "where": "worker",
                   "message": "finite, input-dependent logits on 40 test examples"})
    ExpertVersion.objects.filter(pk=version.pk).update(checks=checks)
    rival = make_version(make_expert(stranger, news, "rival"), accuracy=0.8)
    keys = [str(version.pk), str(rival.pk)]
    production_with([version, rival], {
        "summary": {"accuracy": 0.8}, "credit": {keys[0]: 0.05, keys[1]: 0.01},
        "shapley": {keys[0]: 0.42, keys[1]: 0.38},
        "shapley_ci95": {keys[0]: [0.40, 0.44], keys[1]: [0.36, 0.40]},
        "shapley_method": {"method": "sampled"}}, maintainer)
    leaderboards_refresh()

    guest = visitor("guest")
    page = guest.go(f"/experts/{expert.pk}/versions/1/", "version-card")
    assert_readable_layout(page)
    expect(page.locator("#badges")).to_contain_text("In production · gating v1")
    expect(page.locator("#badges")).to_contain_text("Shapley credit +0.4200 [0.4000, 0.4400]")
    expect(page.locator("#description strong")).to_have_text("wire stories")
    expect(page.locator("#description table tr")).to_have_count(3)
    assert page.evaluate("window.hacked === undefined")
    expect(page.locator("#description img")).to_have_count(0)
    expect(page.locator("#checks tbody tr")).to_have_count(9)
    expect(page.locator(".metrics")).to_contain_text("[0.709, 0.929]")
    expect(page.locator("#snippet-curl")).to_contain_text("/api/v1/predict/")
    expect(page.locator("#readme-link")).to_be_visible()

    # The production model here has no weights file, so the API refuses: the box says why.
    page.locator("#try-it-text").fill("Stocks rallied after the central bank's decision.")
    page.locator("#try-it-form").get_by_role("button", name="Predict").click()
    expect(page.locator("#try-it-error")).to_contain_text("no weights file")
    expect(page.locator("#try-it-result")).to_be_hidden()
    guest.snap("try-it-refused")
    assert_readable_layout(page)
    page.set_viewport_size({"width": 800, "height": 900})  # snippets and tables must wrap
    guest.snap("version-card-800")
    assert_readable_layout(page)
    page.set_viewport_size({"width": 1280, "height": 900})

    page = guest.go(f"/experts/{expert.pk}/", "expert-card")
    assert_readable_layout(page)
    expect(page.locator("#badges")).to_contain_text("In production")
    expect(page.locator("td.accuracy").first).to_contain_text("[0.709, 0.929]")
    _expect_only_refusal_logged(guest, 503)


def test_it_shows_the_upload_progress_bar_only_while_uploading(visitor, owner, news, tmp_path):
    expert = make_expert(owner, news, "wire-topics")
    bad = tmp_path / "manifest.json"
    bad.write_text("this is not JSON")
    weights = tmp_path / "weights.safetensors"
    weights.write_bytes(b"\x00" * 64)

    alice = visitor("alice")
    log_in(alice, "alice", "pw-alice")
    page = alice.go(f"/experts/{expert.pk}/upload/", "upload-form")
    assert_readable_layout(page)
    expect(page.locator(".upload-progress")).to_be_hidden()
    expect(page.locator(".upload-error")).to_be_hidden()

    page.get_by_label("Manifest").set_input_files(bad)
    page.get_by_label("Weights").set_input_files(weights)
    # Hold the POST until the bar has been seen: no race with a fast server.
    held = []
    page.route("**/upload/", lambda route: held.append(route))
    page.get_by_role("button", name="Upload").click()
    expect(page.locator(".upload-progress")).to_be_visible()
    expect(page.get_by_role("button", name="Upload")).to_be_disabled()
    alice.snap("uploading")
    assert len(held) == 1 and held[0].request.method == "POST"
    held[0].continue_()
    page.unroute("**/upload/")
    expect(page.locator(".upload-error")).to_be_visible()
    expect(page.locator(".upload-error")).to_contain_text("manifest")
    expect(page.locator(".upload-progress")).to_be_hidden()
    alice.snap("upload-refused")
    assert_readable_layout(page)
    assert not ExpertVersion.objects.exists()
    _expect_only_refusal_logged(alice, 400)


def test_it_answers_from_the_try_it_box_and_marks_this_version(visitor, owner, maintainer,
                                                               tmp_path):
    from gating import serving
    from tests.gating.playground_model import production_model

    serving.reset()  # the live server shares this process's loaded model
    try:
        # Untrained, the router sends every text to expert 0: the news expert answers.
        gating = production_model(owner=owner, maintainer=maintainer, folder=tmp_path, favour=0)
        news = gating.members_in_order()[0].expert_version
        guest = visitor("guest")
        page = guest.go(f"/experts/{news.expert_id}/versions/{news.number}/", "in-production")
        expect(page.locator("#badges")).to_contain_text(f"In production · gating v{gating.number}")
        page.locator("#try-it-text").fill("Stocks rallied after the central bank's decision.\n"
                                          "Who wrote the first dictionary?")
        page.locator("#try-it-form").get_by_role("button", name="Predict").click()
        rows = page.locator("#try-it-result tbody tr")
        expect(rows).to_have_count(2)
        expect(rows.first).to_contain_text("news: ")
        expect(rows.first.locator(".this-version")).to_contain_text(news.label)
        expect(page.locator("#try-it-error")).to_be_hidden()
        guest.snap("try-it-answered")
        assert_readable_layout(page)
    finally:
        serving.reset()
