"""In a real browser: a worse candidate needs the confirmation box; the history names who."""
from __future__ import annotations

from gating import selectors
from gating.models import Promotion
from tests.e2e.conftest import log_in
from tests.gating.test_promotion_confirm import version_with_hits


def test_it_needs_the_box_ticked_to_promote_a_worse_model(visitor, maintainer):
    good = version_with_hits(1, "1111111100")
    worse = version_with_hits(2, "1111110000")
    Promotion.objects.create(version=good, promoted_by=maintainer)
    maya = visitor("maya")
    log_in(maya, "maya", "pw-maya")
    page = maya.go(f"/gating/{worse.pk}/", "worse-candidate")
    assert page.locator("#promotion-comparison").is_visible()
    assert "-0.2000" in page.content()
    page.get_by_role("button", name="Promote to production").click()
    page.get_by_text("confirm to promote a worse model").wait_for()
    maya.snap("refused-without-confirmation")
    assert selectors.production_version_id() == good.pk

    page.locator("#confirm-worse").check()
    page.get_by_role("button", name="Promote to production").click()
    page.get_by_text("is now in production").wait_for()
    maya.snap("promoted-with-confirmation")
    assert selectors.production_version_id() == worse.pk
    page = maya.go("/gating/", "history")
    assert "by maya (-0.2000)" in page.content()


def test_it_shows_shapley_credit_with_intervals_and_ties_on_the_leaderboard(
        visitor, owner, stranger, maintainer, news):
    from experts.leaderboards import leaderboards_refresh
    from tests.experts.test_leaderboards import production_with
    from tests.helpers import make_expert, make_version

    mine = make_version(make_expert(owner, news, "a"))
    twin = make_version(make_expert(stranger, news, "b"))
    keys = [str(mine.pk), str(twin.pk)]
    production_with([mine, twin], {
        "summary": {"accuracy": 0.8}, "credit": {keys[0]: 0.0, keys[1]: 0.0},
        "shapley": {keys[0]: 0.40, keys[1]: 0.39},
        "shapley_by_contributor": {str(owner.pk): 0.40, str(stranger.pk): 0.39},
        "shapley_by_contributor_ci95": {str(owner.pk): [0.37, 0.43],
                                        str(stranger.pk): [0.36, 0.42]},
        "shapley_method": {"method": "sampled"},
    }, maintainer)
    leaderboards_refresh()
    guest = visitor("guest")
    page = guest.go("/leaderboards/", "leaderboards")
    assert page.locator("#credit-meaning").is_visible()
    row = page.locator("#contributors ~ table tbody tr").first
    assert "(tie)" in row.inner_text() and "[0.3700, 0.4300]" in row.inner_text()
