"""The URL fetcher's retry policy (tenacity): which failures are tried again, how many times, and the
per-URL deadline that bounds the retries too. A real loopback server counts the requests."""

from __future__ import annotations

import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from mmpipe.sources.fetch import FetchConfig, fetch_all


@pytest.fixture
def server():
    hits: Counter = Counter()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            hits[self.path] += 1
            status = {"/busy": 503, "/missing": 404}.get(self.path)
            if self.path == "/second-time":
                status = 503 if hits[self.path] == 1 else None
            body = b"" if status else b"hello"
            self.send_response(status or 200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", hits
    srv.shutdown()


def test_retryable_statuses_are_tried_retries_plus_one_times_and_others_once(server):
    base, hits = server
    got = fetch_all([f"{base}/busy", f"{base}/missing", f"{base}/second-time"],
                    FetchConfig(retries=2, backoff_s=0.01, concurrency=1))
    assert got == [(None, "http_503"), (None, "http_404"), (b"hello", None)]
    assert hits == Counter({"/busy": 3, "/missing": 1, "/second-time": 2})


def test_the_deadline_bounds_the_retries(server):
    base, hits = server
    # the first backoff (5 s) outlasts the whole fetch's deadline (0.5 s): no second try, a timeout
    got = fetch_all([f"{base}/busy"], FetchConfig(retries=3, backoff_s=5.0, deadline_s=0.5, concurrency=1))
    assert got == [(None, "timeout")] and hits["/busy"] == 1
