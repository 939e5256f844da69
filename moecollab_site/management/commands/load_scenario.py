"""A bounded load scenario against a server on loopback: expert lists, leaderboards, predict.

Each endpoint is measured on its own for --duration seconds with --concurrency keep-alive
connections; the report gives requests, statuses, req/s and latency percentiles per endpoint.
"""
from __future__ import annotations

import http.client
import json
import random
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

from gating.management.commands.predict_load import percentile

LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_DURATION_S = 120  # per endpoint
MAX_REQUESTS = 10_000  # per endpoint, whatever the duration
PREDICT_TEXT = "The striker scored twice in the derby."
SEED_EMAIL_DOMAIN = "load.moecollab.invalid"  # marks the rows --seed-experts owns


@dataclass
class Endpoint:
    name: str
    method: str
    path: str
    body: str | None = None


@dataclass
class Result:
    endpoint: str
    path: str
    requests: int = 0  # measured (warm-up requests left out)
    ok: int = 0  # 2xx
    statuses: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0  # the measured window (after the warm-up)
    req_per_s: float = 0.0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None


def scenario_endpoints(*, domain: str | None, only: list[str] | None) -> list[Endpoint]:
    endpoints = [
        Endpoint("experts page", "GET", "/experts/"),
        Endpoint("experts API", "GET", "/api/v1/experts/"),
        Endpoint("leaderboards page", "GET", "/leaderboards/"),
        Endpoint("contributor leaderboard API", "GET", "/api/v1/leaderboards/contributors/"),
    ]
    if domain:
        endpoints.append(Endpoint("domain leaderboard API", "GET",
                                  f"/api/v1/leaderboards/domains/{domain}/"))
    endpoints.append(Endpoint("predict, 1 text", "POST", "/api/v1/predict/",
                              json.dumps({"texts": [PREDICT_TEXT]})))
    if only:
        endpoints = [e for e in endpoints if any(o in e.name or o == e.path for o in only)]
    return endpoints


def measure(host: str, port: int, endpoint: Endpoint, *, duration: float, concurrency: int,
            warmup: int) -> Result:
    """Hammer one endpoint from `concurrency` threads until the duration or request cap."""
    latencies: list[float] = []
    window = [float("inf"), 0.0]  # first start and last end of a measured request
    statuses: dict[str, int] = {}
    lock = threading.Lock()
    budget = iter(range(MAX_REQUESTS + warmup * concurrency))
    headers = {"Accept": "application/json" if endpoint.path.startswith("/api/") else "text/html"}
    if endpoint.body is not None:
        headers["Content-Type"] = "application/json"
    started = time.perf_counter()
    deadline = started + duration

    def connection() -> http.client.HTTPConnection:
        return http.client.HTTPConnection(host, port, timeout=60)

    def worker() -> None:
        conn, done = connection(), 0
        for _ in budget:
            if time.perf_counter() >= deadline:
                break
            t0 = time.perf_counter()
            try:
                conn.request(endpoint.method, endpoint.path, endpoint.body, headers)
                response = conn.getresponse()
                response.read()
                status = str(response.status)
                if response.getheader("Connection", "").lower() == "close":
                    conn.close()
                    conn = connection()
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                conn.close()
                conn = connection()
            elapsed = time.perf_counter() - t0
            done += 1
            if done <= warmup:
                continue
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
                latencies.append(elapsed)
                window[0], window[1] = min(window[0], t0), max(window[1], t0 + elapsed)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # Throughput over the measured window only: warm-up (model loading) is left out.
    measured = window[1] - window[0] if latencies else 0.0
    ok = sum(n for s, n in statuses.items() if s.startswith("2"))
    result = Result(endpoint.name, endpoint.path, requests=len(latencies), ok=ok,
                    statuses=dict(sorted(statuses.items())), seconds=round(measured, 2),
                    req_per_s=round(len(latencies) / measured, 1) if measured > 0 else 0.0)
    if latencies:
        result.p50_ms = round(percentile(latencies, 50) * 1000, 1)
        result.p95_ms = round(percentile(latencies, 95) * 1000, 1)
        result.p99_ms = round(percentile(latencies, 99) * 1000, 1)
    return result


def seed_experts(n: int, *, seed: int = 0) -> int:
    """Top the installation up to `n` extra experts (1-3 versions each) owned by load-test
    contributors, spread over the existing domains, then rebuild the leaderboards.

    For a scratch installation used for measurements: the versions are metadata only (no
    weights), so they must never be trained on; the accounts are marked by their e-mail domain.
    """
    from django.contrib.auth.models import User
    from django.db import transaction
    from django.utils import timezone

    from experts.leaderboards import leaderboards_refresh
    from experts.models import Domain, Expert, ExpertVersion
    from moecollab_site.roles import CONTRIBUTOR, user_add_role

    domains = list(Domain.objects.order_by("name"))
    if not domains:
        raise CommandError("no domains to seed experts into: build the demo first "
                           "(python manage.py prepare_demo)")
    have = Expert.objects.filter(owner__email__endswith="@" + SEED_EMAIL_DOMAIN).count()
    rng = random.Random(seed + have)
    users = []
    for i in range(25):
        user, created = User.objects.get_or_create(
            username=f"load-contributor-{i:02d}",
            defaults={"email": f"load-{i:02d}@{SEED_EMAIL_DOMAIN}"})
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
            user_add_role(user=user, role=CONTRIBUTOR)
        users.append(user)
    statuses = [ExpertVersion.Status.APPROVED] * 6 + [
        ExpertVersion.Status.AWAITING_REVIEW, ExpertVersion.Status.REJECTED,
        ExpertVersion.Status.INVALID, ExpertVersion.Status.CHANGES_REQUESTED]
    now = timezone.now()
    with transaction.atomic():
        for i in range(have, n):
            domain = domains[i % len(domains)]
            expert = Expert.objects.create(
                owner=users[i % len(users)], domain=domain, name=f"{domain.name}-load-{i:04d}",
                description=f"Synthetic expert {i} for load measurements.")
            versions = []
            for number in range(1, rng.randint(1, 3) + 1):
                accuracy = round(rng.uniform(0.3, 0.95), 4)
                versions.append(ExpertVersion(
                    expert=expert, number=number, status=rng.choice(statuses), kind="head",
                    manifest={"domain": domain.name, "labels": domain.labels},
                    metrics={"test_accuracy": accuracy, "test_macro_f1": accuracy - 0.02,
                             "eval_split": "test", "n_eval": 300},
                    n_parameters=rng.randint(20_000, 200_000), created_at=now))
            ExpertVersion.objects.bulk_create(versions)
    leaderboards_refresh()
    return max(0, n - have)


class Command(BaseCommand):
    help = ("Measure expert lists, leaderboards and predict on a server on loopback: per endpoint "
            "req/s, p50, p95, p99 (bounded in time and requests).")

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000",
                            help="base URL of the server (loopback only)")
        parser.add_argument("--duration", type=float, default=20,
                            help=f"seconds per endpoint (at most {MAX_DURATION_S})")
        parser.add_argument("--concurrency", type=int, default=4, help="connections (1..32)")
        parser.add_argument("--warmup", type=int, default=2,
                            help="requests per connection left out of the numbers")
        parser.add_argument("--domain", default=None,
                            help="domain of the domain-leaderboard endpoint (default: the "
                                 "first one the server lists)")
        parser.add_argument("--only", default="",
                            help="comma-separated endpoint names or paths to measure")
        parser.add_argument("--json", dest="json_path", type=Path, default=None,
                            help="also write the results to this file")
        parser.add_argument("--seed-experts", dest="seed_count", type=int, default=0,
                            help="first top this process's database up to N synthetic experts "
                                 "(a scratch installation only; see the docs)")

    def handle(self, *args, url, duration, concurrency, warmup, domain, only, json_path,
               seed_count, **options):
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in LOOPBACK:
            raise CommandError("this tool only measures an http:// server on the loopback "
                               "interface")
        if not 0 < duration <= MAX_DURATION_S or not 1 <= concurrency <= 32 or warmup < 0:
            raise CommandError(f"duration must be in (0, {MAX_DURATION_S}], concurrency in "
                               "1..32, warmup >= 0")
        if seed_count:
            added = seed_experts(seed_count)
            self.stdout.write(f"seeded {added} synthetic experts; leaderboards rebuilt")
        host, port = parts.hostname, parts.port or 80
        if domain is None:
            domain = self._first_domain(host, port)
        only_names = [o.strip() for o in only.split(",") if o.strip()] or None
        results = []
        for endpoint in scenario_endpoints(domain=domain, only=only_names):
            result = measure(host, port, endpoint, duration=duration, concurrency=concurrency,
                             warmup=warmup)
            results.append(result)
            self.stdout.write(self._row(result))
        if json_path is not None:
            report = {"url": url, "duration_s": duration, "concurrency": concurrency,
                      "results": [asdict(r) for r in results]}
            json_path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        failed = [r.endpoint for r in results if r.ok < r.requests]
        if failed:
            self.stderr.write(f"non-2xx answers from: {', '.join(failed)} (see statuses)")

    @staticmethod
    def _first_domain(host: str, port: int) -> str | None:
        conn = http.client.HTTPConnection(host, port, timeout=30)
        try:
            conn.request("GET", "/api/v1/domains/", headers={"Accept": "application/json"})
            response = conn.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException) as exc:
            raise CommandError(f"cannot reach the server at {host}:{port}: {exc}") from None
        finally:
            conn.close()
        if response.status != 200:
            return None
        data = json.loads(body.decode())
        rows = data.get("results", data) if isinstance(data, dict) else data
        return rows[0]["name"] if rows else None

    @staticmethod
    def _row(r: Result) -> str:
        def ms(v):
            return "-" if v is None else f"{v:.1f} ms"

        statuses = ", ".join(f"{s}: {n}" for s, n in r.statuses.items())
        return (f"{r.endpoint:<28} {r.path:<40} {r.requests:>6} req  {r.req_per_s:>7.1f} req/s  "
                f"p50 {ms(r.p50_ms):>10}  p95 {ms(r.p95_ms):>10}  p99 {ms(r.p99_ms):>10}  "
                f"[{statuses}]")
