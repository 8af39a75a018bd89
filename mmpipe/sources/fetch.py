"""Fetching http(s) URLs with timeouts, an overall deadline, bounded retries and a concurrency cap."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class FetchConfig:
    """How URLs are fetched; a failure becomes the drop reason `fetch_failed` with a detail, never a crash.

    `timeout_s` bounds each network wait; `deadline_s` bounds one whole attempt, so a server that
    trickles a byte at a time cannot hold a run.
    """

    timeout_s: float = 10.0
    deadline_s: float = 60.0
    retries: int = 2
    concurrency: int = 16
    max_bytes: int = 64 * 1024 * 1024
    backoff_s: float = 0.2
    user_agent: str = "mmpipe/0.1 (+dataset curation)"


_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


class _Deadline(Exception):
    pass


def _fetch_one(client: httpx.Client, url: str, cfg: FetchConfig) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, detail): http_<status>, timeout, too_large, redirect_refused, connection."""
    failure = "error"
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
        start = time.monotonic()
        try:
            with client.stream("GET", url) as r:
                if r.status_code != 200:
                    failure = f"http_{r.status_code}"
                    if r.status_code in _RETRY_STATUS:
                        continue
                    return None, failure
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                    return None, "too_large"
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > cfg.max_bytes:
                        return None, "too_large"
                    if time.monotonic() - start > cfg.deadline_s:
                        raise _Deadline
                    chunks.append(chunk)
                return b"".join(chunks), None
        except (httpx.TimeoutException, _Deadline):
            failure = "timeout"
        except httpx.UnsupportedProtocol:
            # Only http(s) is followed: a redirect to file://, ftp:// etc. is refused, never retried.
            return None, "redirect_refused"
        except httpx.HTTPError:
            failure = "connection"
    return None, failure


def fetch_all(urls: list[str], cfg: FetchConfig | None = None) -> list[tuple[bytes | None, str | None]]:
    """(content, None) or (None, failure detail) for each URL, in order."""
    cfg = cfg or FetchConfig()
    if not urls:
        return []
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    with httpx.Client(timeout=cfg.timeout_s, follow_redirects=True, max_redirects=5, limits=limits,
                      headers={"User-Agent": cfg.user_agent}) as client:
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            return list(pool.map(lambda u: _fetch_one(client, u, cfg), urls))
