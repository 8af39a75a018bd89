"""Fetching http(s) URLs with timeouts, bounded retries and a concurrency cap."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx


@dataclass
class FetchConfig:
    """How URLs are fetched; a failure becomes a drop reason, never a crash."""

    timeout_s: float = 10.0
    retries: int = 2
    concurrency: int = 16
    max_bytes: int = 64 * 1024 * 1024
    backoff_s: float = 0.2
    user_agent: str = "mmpipe/0.1 (+dataset curation)"


_RETRY_STATUS = {408, 425, 429, 500, 502, 503, 504}


def _fetch_one(client: httpx.Client, url: str, cfg: FetchConfig) -> tuple[bytes | None, str | None]:
    reason = "fetch_failed:error"
    for attempt in range(cfg.retries + 1):
        if attempt:
            time.sleep(cfg.backoff_s * 2 ** (attempt - 1))
        try:
            with client.stream("GET", url) as r:
                if r.status_code != 200:
                    reason = f"fetch_failed:http_{r.status_code}"
                    if r.status_code in _RETRY_STATUS:
                        continue
                    return None, reason
                chunks, size = [], 0
                for chunk in r.iter_bytes():
                    size += len(chunk)
                    if size > cfg.max_bytes:
                        return None, "fetch_failed:too_large"
                    chunks.append(chunk)
                return b"".join(chunks), None
        except httpx.TimeoutException:
            reason = "fetch_failed:timeout"
        except httpx.HTTPError:
            reason = "fetch_failed:connection"
    return None, reason


def fetch_all(urls: list[str], cfg: FetchConfig | None = None) -> list[tuple[bytes | None, str | None]]:
    """(content, None) or (None, drop reason) for each URL, in order."""
    cfg = cfg or FetchConfig()
    if not urls:
        return []
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    with httpx.Client(timeout=cfg.timeout_s, follow_redirects=True, limits=limits,
                      headers={"User-Agent": cfg.user_agent}) as client:
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            return list(pool.map(lambda u: _fetch_one(client, u, cfg), urls))
