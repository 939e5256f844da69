"""SQLite, the default database, takes concurrent writers in turn instead of failing them.

WAL lets readers and one writer work at once; BEGIN IMMEDIATE makes a transaction that will
write wait for the lock (up to the busy timeout) when it starts, instead of failing with
"database is locked" when it first writes after reading. A lock held past the timeout is
answered as a busy database, not as an outage.
"""
from __future__ import annotations

import threading

import pytest
from django.db import OperationalError, connection, connections, transaction
from django.test import RequestFactory

from experts.models import Expert, ExpertVersion
from moecollab_site.middleware import DatabaseUnavailableMiddleware
from tests.helpers import make_domain, make_expert
from training.models import Job

WRITERS = 6

sqlite_only = pytest.mark.skipif(connection.vendor != "sqlite",
                                 reason="the SQLite settings; PostgreSQL has row locks")


def _in_threads(work, n: int = WRITERS) -> list[BaseException]:
    """Run work(i) in n threads released together; returns what they raised."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(10)
            work(i)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted on below
            errors.append(exc)
        finally:
            connections.close_all()  # this thread's own connection

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return errors


@sqlite_only
def test_it_uses_a_file_in_wal_mode_with_a_busy_timeout(transactional_db):
    assert connection.settings_dict["NAME"] != ":memory:"
    with connection.cursor() as cursor:
        assert cursor.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert cursor.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
    assert connection.settings_dict["OPTIONS"]["transaction_mode"] == "IMMEDIATE"


@sqlite_only
def test_it_lets_concurrent_read_then_write_transactions_all_succeed(transactional_db, owner):
    """What an upload does: lock the expert row (a read on SQLite), then insert a version."""
    expert = make_expert(owner, make_domain("toy"))

    def upload(i: int) -> None:
        with transaction.atomic():
            locked = Expert.objects.select_for_update().get(pk=expert.pk)
            number = ExpertVersion.objects.filter(expert=locked).count() + 1
            ExpertVersion.objects.create(expert=locked, number=number,
                                         weights_sha256=f"{i:064d}")

    assert _in_threads(upload) == []
    assert sorted(expert.versions.values_list("number", flat=True)) == list(
        range(1, WRITERS + 1))


@sqlite_only
def test_it_lets_concurrent_workers_claim_their_jobs(transactional_db):
    jobs = [Job.objects.create(kind=Job.Kind.SELF_CHECK) for _ in range(WRITERS)]
    claimed: list[bool] = []

    assert _in_threads(lambda i: claimed.append(jobs[i].claim(worker=f"w{i}"))) == []
    assert claimed == [True] * WRITERS
    assert set(Job.objects.values_list("status", flat=True)) == {Job.Status.RUNNING}


def test_it_answers_a_locked_database_as_busy_not_unreachable(db):
    middleware = DatabaseUnavailableMiddleware(lambda request: None)
    for path in ("/api/v1/experts/", "/experts/"):
        response = middleware.process_exception(RequestFactory().post(path),
                                                OperationalError("database is locked"))
        assert response.status_code == 503
        assert response["Retry-After"]
        body = response.content.decode()
        assert "unreachable" not in body and "busy" in body
        if path.startswith("/api/"):
            assert '"database_busy"' in body
    down = middleware.process_exception(RequestFactory().get("/api/v1/experts/"),
                                        OperationalError("could not connect to server"))
    assert "unreachable" in down.content.decode()
