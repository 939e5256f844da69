"""A small, bounded load generator for POST /api/v1/predict/ (loopback measurements)."""
from __future__ import annotations

import http.client
import json
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

MAX_REQUESTS = 10_000


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


class Command(BaseCommand):
    help = "Send a fixed number of predict requests and report latency percentiles and texts/s."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/api/v1/predict/")
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--batch", type=int, default=1, help="texts per request")
        parser.add_argument("--texts", type=Path, default=None,
                            help="JSONL file with a text field (default: one short sentence)")
        parser.add_argument("--warmup", type=int, default=5)

    def handle(self, *args, url, requests, concurrency, batch, texts, warmup, **options):
        if not 1 <= requests <= MAX_REQUESTS or not 1 <= concurrency <= 64:
            raise CommandError(f"requests must be in 1..{MAX_REQUESTS}, concurrency in 1..64")
        parts = urlsplit(url)
        if parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise CommandError("this tool only measures a server on the loopback interface")
        pool = ["The striker scored twice in the derby."]
        if texts is not None:
            pool = [json.loads(line)["text"] for line in texts.open(encoding="utf-8")]
        body = json.dumps({"texts": [pool[i % len(pool)] for i in range(batch)]})
        latencies: list[float] = []
        errors: list[str] = []
        lock = threading.Lock()
        counter = iter(range(requests + warmup * concurrency))

        def worker():
            conn = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=60)
            done = 0
            for _ in counter:
                started = time.perf_counter()
                conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - started
                done += 1
                with lock:
                    if response.status != 200:
                        errors.append(str(response.status))
                    elif done > warmup:
                        latencies.append(elapsed)
            conn.close()

        threads = [threading.Thread(target=worker) for _ in range(concurrency)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        if errors or not latencies:
            raise CommandError(f"{len(errors)} failed requests (statuses {set(errors)})")
        n = len(latencies)
        mean = sum(latencies) / n
        self.stdout.write(
            f"{n} requests x {batch} texts, concurrency {concurrency}: "
            f"p50 {percentile(latencies, 50) * 1000:.1f} ms, "
            f"p95 {percentile(latencies, 95) * 1000:.1f} ms, "
            f"p99 {percentile(latencies, 99) * 1000:.1f} ms, mean {mean * 1000:.1f} ms; "
            f"{concurrency * batch / mean:.0f} texts/s (steady state), "
            f"{(n + warmup * concurrency) * batch / wall:.0f} texts/s over {wall:.1f} s wall"
        )
