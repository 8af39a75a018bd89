"""Fetching http(s) URLs with timeouts, an overall deadline, bounded retries and a concurrency cap."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpcore
import httpx
import tenacity


@dataclass(frozen=True)
class FetchConfig:
    """How URLs are fetched; a failure becomes the drop reason `fetch_failed` with a detail, never a crash.

    `timeout_s` bounds each network wait; `deadline_s` bounds the whole fetch of a URL (connecting,
    response headers, body and retries), so a server that trickles a byte at a time cannot hold a run.
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


_deadline = threading.local()  # when the fetch on this thread must be done (time.monotonic())


def _clamp(timeout: float | None) -> float | None:
    """A network wait no longer than what is left of this thread's fetch deadline."""
    end = getattr(_deadline, "at", None)
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise httpcore.ReadTimeout("past the fetch's overall deadline")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """A connection whose every read and write waits at most until the fetch's deadline, so a
    server that trickles its response headers a byte at a time cannot hold a fetch."""

    def __init__(self, inner: httpcore.NetworkStream):
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _clamp(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(self, ssl_context, server_hostname=None, timeout=None):
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, _clamp(timeout)))

    def get_extra_info(self, info: str):
        return self._inner.get_extra_info(info)


class _DeadlineBackend(httpcore.NetworkBackend):
    """httpcore's sync backend with connects and streams bounded by the fetch deadline."""

    def __init__(self):
        self._inner = httpcore.SyncBackend()

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        return _DeadlineStream(self._inner.connect_tcp(host, port, _clamp(timeout), local_address, socket_options))

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        return _DeadlineStream(self._inner.connect_unix_socket(path, _clamp(timeout), socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _transport(limits: httpx.Limits) -> httpx.HTTPTransport:
    transport = httpx.HTTPTransport(limits=limits)
    pool = getattr(transport, "_pool", None)
    if hasattr(pool, "_network_backend"):  # httpx does not expose the backend; without it the body is still bounded
        pool._network_backend = _DeadlineBackend()
    return transport


class _Retryable(Exception):
    """A try that failed in a way another may not: a retryable status, a timeout, a dropped connection."""

    def __init__(self, failure: str):
        super().__init__(failure)
        self.failure = failure


def _fetch_one(client: httpx.Client, url: str, cfg: FetchConfig) -> tuple[bytes | None, str | None]:
    """(bytes, None) or (None, detail): http_<status>, timeout, too_large, redirect_refused, connection."""
    end = time.monotonic() + cfg.deadline_s  # one deadline for the URL: connecting, headers, body, retries
    attempts = cfg.retries + 1

    def out_of_time(rs: tenacity.RetryCallState) -> bool:  # no backoff that would end past the deadline
        return time.monotonic() + rs.upcoming_sleep >= end

    def gave_up(rs: tenacity.RetryCallState) -> tuple[None, str]:
        return None, "timeout" if rs.attempt_number < attempts else rs.outcome.exception().failure

    return tenacity.Retrying(retry=tenacity.retry_if_exception_type(_Retryable),
                             stop=tenacity.stop_after_attempt(attempts) | out_of_time,
                             wait=tenacity.wait_exponential(multiplier=cfg.backoff_s),
                             retry_error_callback=gave_up)(_try_once, client, url, cfg, end)


def _try_once(client: httpx.Client, url: str, cfg: FetchConfig, end: float) -> tuple[bytes | None, str | None]:
    """One GET of `url`: its result, or _Retryable for a failure worth another try before `end`."""
    if time.monotonic() >= end:
        return None, "timeout"
    _deadline.at = end
    try:
        with client.stream("GET", url) as r:
            if r.status_code != 200:
                if r.status_code in _RETRY_STATUS:
                    raise _Retryable(f"http_{r.status_code}")
                return None, f"http_{r.status_code}"
            declared = r.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > cfg.max_bytes:
                return None, "too_large"
            chunks, size = [], 0
            for chunk in r.iter_bytes():
                size += len(chunk)
                if size > cfg.max_bytes:
                    return None, "too_large"
                if time.monotonic() > end:
                    raise _Deadline
                chunks.append(chunk)
            return b"".join(chunks), None
    except (httpx.TimeoutException, _Deadline):
        raise _Retryable("timeout") from None
    except httpx.UnsupportedProtocol:
        # Only http(s) is followed: a redirect to file://, ftp:// etc. is refused, never retried.
        return None, "redirect_refused"
    except httpx.HTTPError:
        raise _Retryable("connection") from None
    finally:
        _deadline.at = None


def fetch_all(urls: list[str], cfg: FetchConfig | None = None) -> list[tuple[bytes | None, str | None]]:
    """(content, None) or (None, failure detail) for each URL, in order."""
    cfg = cfg or FetchConfig()
    if not urls:
        return []
    limits = httpx.Limits(max_connections=cfg.concurrency, max_keepalive_connections=cfg.concurrency)
    with httpx.Client(timeout=cfg.timeout_s, follow_redirects=True, max_redirects=5, transport=_transport(limits),
                      headers={"User-Agent": cfg.user_agent}) as client:
        with ThreadPoolExecutor(max_workers=cfg.concurrency) as pool:
            return list(pool.map(lambda u: _fetch_one(client, u, cfg), urls))
