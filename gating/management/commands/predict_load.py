"""A small, bounded load generator for POST /api/v1/predict/ (loopback measurements).

With --heavy-batch it also measures fairness: the one-text client's latency first on its own,
then while a second client (its own loopback source address, so the throttles count it apart)
sends batches of --heavy-batch texts of --heavy-chars characters as fast as its budget allows,
sleeping out each 429's Retry-After.
"""
from __future__ import annotations

import http.client
import ipaddress
import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from django.core.management.base import BaseCommand, CommandError

MAX_REQUESTS = 10_000
MAX_SECONDS = 600  # the whole run, heavy client included


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


@dataclass
class Phase:
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    wall: float = 0.0


def _loopback(host: str | None) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host or "").is_loopback
    except ValueError:
        return False


def _connection(parts, source: str | None) -> http.client.HTTPConnection:
    return http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=120,
                                      source_address=(source, 0) if source else None)


def _measure(parts, body: str, *, requests: int, concurrency: int, warmup: int,
             interval: float, source: str | None, deadline: float) -> Phase:
    """Send `requests` (+ warm-up) calls over `concurrency` keep-alive connections."""
    phase = Phase()
    lock = threading.Lock()
    counter = iter(range(requests + warmup * concurrency))

    def worker():
        conn = _connection(parts, source)
        done = 0
        for _ in counter:
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            conn.request("POST", parts.path, body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            response.read()
            elapsed = time.perf_counter() - started
            done += 1
            with lock:
                if response.status != 200:
                    phase.errors.append(str(response.status))
                elif done > warmup:
                    phase.latencies.append(elapsed)
            if interval:
                time.sleep(interval)
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    phase.wall = time.perf_counter() - t0
    return phase


class HeavyClient:
    """Connections that send maximum batches until stopped, honouring Retry-After on 429."""

    def __init__(self, parts, body: str, *, concurrency: int, source: str):
        self.parts, self.body, self.source = parts, body, source
        self.statuses: Counter[str] = Counter()
        self.stop = threading.Event()
        self.started = time.perf_counter()
        self.threads = [threading.Thread(target=self._run) for _ in range(concurrency)]
        self._lock = threading.Lock()

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> float:
        self.stop.set()
        for t in self.threads:
            t.join()
        return time.perf_counter() - self.started

    def _run(self) -> None:
        conn = _connection(self.parts, self.source)
        while not self.stop.is_set():
            try:
                conn.request("POST", self.parts.path, self.body,
                             {"Content-Type": "application/json"})
                response = conn.getresponse()
                response.read()
            except (http.client.HTTPException, OSError):
                # The server closed the kept-alive connection while this one slept: reconnect.
                conn.close()
                conn = _connection(self.parts, self.source)
                with self._lock:
                    self.statuses["reconnect"] += 1
                continue
            with self._lock:
                self.statuses[str(response.status)] += 1
            if response.status == 429:
                self.stop.wait(min(60.0, float(response.getheader("Retry-After") or 1)))
        conn.close()


class Command(BaseCommand):
    help = ("Send a fixed number of predict requests and report latency percentiles and "
            "texts/s; with --heavy-batch, the same again while another client sends "
            "maximum batches at its limit.")

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/api/v1/predict/")
        parser.add_argument("--requests", type=int, default=200)
        parser.add_argument("--concurrency", type=int, default=1)
        parser.add_argument("--batch", type=int, default=1, help="texts per request")
        parser.add_argument("--texts", type=Path, default=None,
                            help="JSONL file with a text field (default: one short sentence)")
        parser.add_argument("--warmup", type=int, default=5)
        parser.add_argument("--interval", type=float, default=0.0,
                            help="seconds each connection pauses between requests (to stay "
                                 "within the client's own throttle)")
        parser.add_argument("--heavy-batch", type=int, default=0,
                            help="texts per request of a second, heavy client (0: none)")
        parser.add_argument("--heavy-chars", type=int, default=2000,
                            help="characters per text of the heavy client")
        parser.add_argument("--heavy-concurrency", type=int, default=2)
        parser.add_argument("--heavy-source", default="127.0.0.2",
                            help="loopback address the heavy client sends from")
        parser.add_argument("--max-seconds", type=float, default=300,
                            help=f"stop the run after this long (at most {MAX_SECONDS})")

    def handle(self, *args, url, requests, concurrency, batch, texts, warmup, interval,
               heavy_batch, heavy_chars, heavy_concurrency, heavy_source, max_seconds,
               **options):
        if not 1 <= requests <= MAX_REQUESTS or not 1 <= concurrency <= 64:
            raise CommandError(f"requests must be in 1..{MAX_REQUESTS}, concurrency in 1..64")
        if not 0 < max_seconds <= MAX_SECONDS or not 0 <= interval <= 10:
            raise CommandError(f"max-seconds must be in (0, {MAX_SECONDS}], interval in 0..10")
        if not 0 <= heavy_batch <= 10_000 or not 1 <= heavy_concurrency <= 16 \
                or not 1 <= heavy_chars <= 100_000:
            raise CommandError("heavy-batch must be in 0..10000, heavy-concurrency in 1..16, "
                               "heavy-chars in 1..100000")
        parts = urlsplit(url)
        if not _loopback(parts.hostname):
            raise CommandError("this tool only measures a server on the loopback interface")
        if heavy_batch and not _loopback(heavy_source):
            raise CommandError("the heavy client must send from a loopback address")
        pool = ["The striker scored twice in the derby."]
        if texts is not None:
            pool = [json.loads(line)["text"] for line in texts.open(encoding="utf-8")]
        body = json.dumps({"texts": [pool[i % len(pool)] for i in range(batch)]})
        deadline = time.monotonic() + max_seconds
        measure = dict(requests=requests, concurrency=concurrency, warmup=warmup,
                       interval=interval, source=None, deadline=deadline)

        idle = _measure(parts, body, **measure)
        self._report("alone" if heavy_batch else "", idle, batch=batch,
                     concurrency=concurrency, warmup=warmup)
        if not heavy_batch:
            return
        long_text = " ".join(pool) + " "
        long_text = (long_text * (heavy_chars // len(long_text) + 1))[:heavy_chars]
        heavy = HeavyClient(parts, json.dumps({"texts": [long_text] * heavy_batch}),
                            concurrency=heavy_concurrency, source=heavy_source)
        heavy.start()
        time.sleep(1.0)  # let the heavy client's first batches reach the server
        try:
            loaded = _measure(parts, body, **measure)
        finally:
            seconds = heavy.join()
        self._report(f"with a heavy client ({heavy_concurrency} connections x {heavy_batch} "
                     f"texts x {heavy_chars} chars)", loaded, batch=batch,
                     concurrency=concurrency, warmup=warmup)
        served = heavy.statuses.get("200", 0)
        statuses = ", ".join(f"{k}: {v}" for k, v in sorted(heavy.statuses.items()))
        self.stdout.write(
            f"heavy client: {sum(heavy.statuses.values())} requests ({statuses}), "
            f"{served * heavy_batch / seconds:.0f} texts/s served over {seconds:.1f} s")
        ratio = percentile(loaded.latencies, 95) / percentile(idle.latencies, 95)
        self.stdout.write(f"p95 with the heavy client / p95 alone: {ratio:.1f}x")

    def _report(self, label: str, phase: Phase, *, batch: int, concurrency: int,
                warmup: int) -> None:
        if phase.errors or not phase.latencies:
            statuses = dict(Counter(phase.errors))
            raise CommandError(f"{label + ': ' if label else ''}{len(phase.errors)} failed "
                               f"requests (statuses {statuses}), {len(phase.latencies)} ok")
        lat = phase.latencies
        n = len(lat)
        mean = sum(lat) / n
        self.stdout.write(
            f"{label + ': ' if label else ''}"
            f"{n} requests x {batch} texts, concurrency {concurrency}: "
            f"p50 {percentile(lat, 50) * 1000:.1f} ms, "
            f"p95 {percentile(lat, 95) * 1000:.1f} ms, "
            f"p99 {percentile(lat, 99) * 1000:.1f} ms, mean {mean * 1000:.1f} ms; "
            f"{concurrency * batch / mean:.0f} texts/s (steady state), "
            f"{(n + warmup * concurrency) * batch / phase.wall:.0f} texts/s over "
            f"{phase.wall:.1f} s wall"
        )
