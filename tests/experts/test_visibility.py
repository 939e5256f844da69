"""Who sees which version: one rule, asked of the database and of a version in memory."""
from __future__ import annotations

from django.contrib.auth.models import AnonymousUser

from experts.models import ExpertVersion
from tests.helpers import make_domain, make_expert, make_version

S = ExpertVersion.Status


def test_it_shows_public_versions_to_all_and_the_rest_to_owner_and_maintainers(
        owner, stranger, maintainer):
    expert = make_expert(owner, make_domain())
    versions = {status: make_version(expert, status=status) for status in S.values}
    public = {S.APPROVED, S.RETIRED}
    expected = {None: public, owner: set(S.values), stranger: public,
                maintainer: set(S.values)}
    for user, statuses in expected.items():
        user = user or AnonymousUser()
        seen = set(ExpertVersion.objects.visible_to(user).values_list("status", flat=True))
        assert seen == statuses, user
        assert {s for s, v in versions.items() if v.is_visible_to(user)} == statuses, user
    assert {s for s, v in versions.items() if v.is_public} == public
