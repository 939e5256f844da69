"""/healthz: database, broker and worker status as JSON; 503 when the database or broker is down."""
from __future__ import annotations

from django.db import DatabaseError, connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache

from moecollab_site.celery import app as celery_app

BROKER_TIMEOUT_S = 2


def check_database() -> dict:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc).strip().splitlines()[0][:300] or type(exc).__name__}
    return {"ok": True, "vendor": connection.vendor}


def check_broker() -> dict:
    url = celery_app.conf.broker_url or ""
    transport = url.split("://", 1)[0]
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, interval_start=0, timeout=BROKER_TIMEOUT_S)
            # Opening a channel exercises the transport, not just the socket.
            conn.default_channel  # noqa: B018
    except Exception as exc:  # noqa: BLE001 - kombu raises many kinds; all mean "down"
        return {"ok": False, "transport": transport, "error": f"{type(exc).__name__}: {exc}"[:300]}
    return {"ok": True, "transport": transport}


def check_workers(database_ok: bool) -> dict:
    if not database_ok:
        return {"ok": False, "error": "unknown: the database is down", "workers": []}
    from training.selectors import workers_alive

    try:
        alive = workers_alive()
    except DatabaseError as exc:
        return {"ok": False, "error": str(exc)[:300], "workers": []}
    workers = [
        {
            "hostname": w.hostname,
            "queues": w.queues.split(","),
            "last_seen": w.last_seen.isoformat(),
        }
        for w in alive
    ]
    result: dict = {"ok": bool(workers), "workers": workers}
    if not workers:
        result["error"] = "no worker has sent a heartbeat recently"
    return result


@never_cache
def healthz(request):
    database = check_database()
    broker = check_broker()
    worker = check_workers(database["ok"])
    serving = database["ok"] and broker["ok"]
    # No worker means jobs wait, but pages still work: report "degraded", not an outage.
    status = "ok" if serving and worker["ok"] else ("degraded" if serving else "down")
    body = {"status": status, "database": database, "broker": broker, "worker": worker}
    return JsonResponse(body, status=200 if serving else 503)
