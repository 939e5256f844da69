"""Leaderboards rank by Shapley credit with intervals, leave-one-out beside it, and ties."""
from __future__ import annotations

from experts.leaderboards import leaderboards_refresh
from experts.models import ExpertVersion, LeaderboardEntry
from gating.models import GatingMember, GatingVersion, Promotion
from tests.helpers import api_client_for, make_expert, make_version


def production_with(versions, report, maintainer) -> GatingVersion:
    gating = GatingVersion.objects.create(number=1, status=GatingVersion.Status.EVALUATED,
                                          report=report)
    for i, v in enumerate(versions):
        GatingMember.objects.create(version=gating, expert_version=v, position=i)
    Promotion.objects.create(version=gating, promoted_by=maintainer)
    return gating


def test_it_ranks_contributors_by_shapley_credit_and_marks_ties(owner, stranger, maintainer,
                                                                 news, client):
    mine = make_version(make_expert(owner, news, "a"))
    twin = make_version(make_expert(stranger, news, "b"))
    junk = make_version(make_expert(stranger, news, "c"))
    keys = [str(v.pk) for v in (mine, twin, junk)]
    production_with([mine, twin, junk], {
        "summary": {"accuracy": 0.8},
        "credit": {keys[0]: 0.0, keys[1]: 0.0, keys[2]: 0.05},  # leave-one-out misleads
        "shapley": {keys[0]: 0.42, keys[1]: 0.41, keys[2]: -0.03},
        "shapley_ci95": {k: [v - 0.02, v + 0.02] for k, v in
                         zip(keys, [0.42, 0.41, -0.03], strict=True)},
        "shapley_method": {"method": "sampled", "permutations": 200},
        "shapley_by_contributor": {str(owner.pk): 0.42, str(stranger.pk): 0.38},
        "shapley_by_contributor_ci95": {str(owner.pk): [0.40, 0.44],
                                        str(stranger.pk): [0.35, 0.41]},
        "credit_by_contributor": {str(owner.pk): 0.0, str(stranger.pk): 0.05},
        "routing": {"load": {keys[0]: 0.5, keys[1]: 0.4, keys[2]: 0.1}},
    }, maintainer)
    leaderboards_refresh()
    rows = api_client_for(None).get("/api/v1/leaderboards/contributors/").json()["results"]
    assert [r["contributor"] for r in rows] == ["alice", "mallory"]
    assert rows[0]["credit"] == 0.42
    assert rows[0]["evidence"]["credit_ci95"] == [0.40, 0.44]
    assert rows[0]["evidence"]["leave_one_out"] == 0.0
    assert rows[1]["evidence"]["leave_one_out"] == 0.05
    assert rows[0]["evidence"]["tie"] and rows[1]["evidence"]["tie"]  # intervals overlap
    assert "Shapley value (sampled)" in rows[0]["evidence"]["method"]
    body = client.get("/leaderboards/").content.decode()
    assert "Shapley credit" in body and "[0.4000, 0.4400]" in body and "(tie)" in body
    assert "a negative credit means" in body


def test_it_shows_n_and_a_wilson_interval_on_domain_boards(owner, stranger, news, client):
    for user, acc, name in ((owner, 0.9, "a"), (stranger, 0.5, "b")):
        version = make_version(make_expert(user, news, name))
        ExpertVersion.objects.filter(pk=version.pk).update(
            metrics={"test_accuracy": acc, "test_macro_f1": acc, "n_eval": 100})
    leaderboards_refresh()
    rows = list(LeaderboardEntry.objects.filter(board="domain").order_by("rank"))
    assert [round(x, 3) for x in rows[0].evidence["interval"]] == [0.826, 0.945]
    assert not rows[0].evidence["tie"]  # [0.826, 0.945] vs [0.404, 0.596]
    body = client.get("/leaderboards/").content.decode()
    assert "[0.826, 0.945]" in body and "<td>100</td>" in body
