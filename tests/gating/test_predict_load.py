"""predict_load measures a one-text client alone and next to a heavy client, on loopback only.

A stand-in server answers here (the real measurement, against gunicorn and a production model,
is in docs/performance.md); the test checks who sent what and that the report has both phases.
"""
from __future__ import annotations

import io
import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: Counter[tuple[str, int, int]] = Counter()  # (source, texts, chars of one)
        self.heavy_calls = 0
        self.lock = threading.Lock()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as gunicorn answers

    def do_POST(self):  # noqa: N802 - the http.server API
        texts = json.loads(self.rfile.read(int(self.headers["Content-Length"])))["texts"]
        server = self.server
        with server.lock:
            server.seen[(self.client_address[0], len(texts), len(texts[0]))] += 1
            heavy = len(texts) > 1
            server.heavy_calls += heavy
            refuse = heavy and server.heavy_calls % 3 == 0  # the heavy client's budget is out
        body = b'{"error": {"code": "throttled"}}' if refuse else b'{"predictions": []}'
        self.send_response(429 if refuse else 200)
        if refuse:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    server = _Server()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_it_reports_the_light_client_alone_and_next_to_a_heavy_one(stand_in):
    url = f"http://127.0.0.1:{stand_in.server_address[1]}/api/v1/predict/"
    out = io.StringIO()
    call_command("predict_load", "--url", url, "--requests", "30", "--warmup", "1",
                 "--heavy-batch", "4", "--heavy-chars", "50", "--heavy-concurrency", "1",
                 "--max-seconds", "60", stdout=out)
    report = out.getvalue()
    assert "alone: 30 requests x 1 texts" in report
    assert "with a heavy client (1 connections x 4 texts x 50 chars): 30 requests" in report
    assert "heavy client:" in report and "429:" in report
    assert "p95 with the heavy client / p95 alone:" in report
    sources = {(source, texts, chars) for source, texts, chars in stand_in.seen}
    light = ("127.0.0.1", 1, len("The striker scored twice in the derby."))
    assert sources == {light, ("127.0.0.2", 4, 50)}
    assert stand_in.seen[light] == 2 * (30 + 1)


@pytest.mark.parametrize("args", [
    ["--url", "http://10.0.0.1:8000/api/v1/predict/"],
    ["--heavy-batch", "64", "--heavy-source", "192.0.2.1"],
    ["--heavy-batch", "64", "--max-seconds", "100000"],
    ["--requests", "100000"],
])
def test_it_refuses_non_loopback_or_unbounded_runs(args):
    with pytest.raises(CommandError):
        call_command("predict_load", *args, stdout=io.StringIO())
