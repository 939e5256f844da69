"""CI's second pass (MOECOLLAB_TESTS=backends) keeps exactly the tests that touch the database,
broker or worker."""
from __future__ import annotations

import pytest

from tests.conftest import touches_backends


class _Item:
    def __init__(self, fixtures=(), markers=()):
        self.fixturenames = list(fixtures)
        self._markers = set(markers)

    def get_closest_marker(self, name):
        return object() if name in self._markers else None


@pytest.mark.parametrize(("item", "kept"), [
    (_Item(fixtures=["tmp_path", "tiny_backbone"]), False),
    (_Item(fixtures=["client", "db"]), True),  # also when db comes through another fixture
    (_Item(fixtures=["browser", "live_server"]), True),
    (_Item(fixtures=["celery_worker_process"]), True),
    (_Item(markers=["django_db"]), True),
    (_Item(markers=["worker"]), True),
    (_Item(markers=["backends"]), True),  # settings read in a subprocess
    (_Item(markers=["timeout"]), False),
])
def test_it_keeps_only_tests_that_touch_the_backends(item, kept):
    assert touches_backends(item) is kept


def test_this_module_is_left_out_of_the_second_pass(request):
    assert not touches_backends(request.node)
