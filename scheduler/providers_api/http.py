"""One small HTTP client for the providers' REST APIs, on requests.

Every call is bounded: connect and read timeouts per request, a number of
attempts, and a deadline for the whole operation (a pull lists, pages and
downloads under one deadline), so that a worker is never held by a slow or
throttling provider. What is worth another try is tried again:

- 5xx answers, timeouts and dropped connections, after an exponential
  backoff (`backoff_seconds`, doubled each time, at most `max_backoff_seconds`);
- rate limits (429, or 403 with `X-RateLimit-Remaining: 0` or `Retry-After`),
  after the wait the provider asks for (`Retry-After`, else the reset time
  of `X-RateLimit-Reset` / `RateLimit-Reset`), when that wait fits before the
  deadline; otherwise the error says how long to wait, and the caller's
  sweeper tries again later.

Everything else (401, 404, a 403 that is a permission) fails at once. The
errors never hold the token: requests does not put headers in its messages,
and redirects are followed here, dropping the credentials when the host
changes (a GitHub artifact redirects to a signed storage URL)."""

from __future__ import annotations

import email.utils
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin, urlsplit

import requests

log = logging.getLogger(__name__)

RETRIED_STATUSES = frozenset({500, 502, 503, 504})
MAX_REDIRECTS = 5
MAX_PAGES = 100
USER_AGENT = "riskrank"


class ProviderApiError(Exception):
    """A call to a provider's API that did not succeed. `retryable`: a later
    attempt may (5xx, rate limit, timeout), `retry_after`: the seconds the
    provider asked to wait, when it said. The message names the method, the
    URL's path and the status, never a credential."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after


@dataclass(frozen=True)
class HttpSettings:
    """The bounds of every call (scheduler.config.Settings.provider_http)."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    max_attempts: int = 5
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 60.0
    total_seconds: float = 300.0
    max_download_bytes: int = 512 * 1024 * 1024


def _where(url: str) -> str:
    """A URL as an error may show it: host and path, no query (a signed
    download URL carries its signature there)."""
    parts = urlsplit(url)
    return f"{parts.netloc}{parts.path}"


def _header_seconds(headers: Mapping[str, str], now: float) -> float | None:
    """The wait a rate-limited answer asks for: Retry-After (seconds or an
    HTTP date), else the reset time (epoch seconds) of X-RateLimit-Reset or
    RateLimit-Reset."""
    retry_after = headers.get("Retry-After")
    if retry_after:
        value = retry_after.strip()
        if value.isdigit():
            return float(value)
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            when = None
        if when is not None:
            return max(0.0, when.timestamp() - now)
    for name in ("X-RateLimit-Reset", "RateLimit-Reset"):
        reset = headers.get(name)
        if reset and reset.strip().isdigit():
            return max(0.0, float(reset) - now)
    return None


def _is_rate_limited(response: requests.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code != 403:
        return False
    headers = response.headers
    # GitHub's primary limit (remaining 0) and secondary limits (Retry-After).
    return headers.get("X-RateLimit-Remaining") == "0" or "Retry-After" in headers


@dataclass
class ApiClient:
    """Calls to one provider API with one set of credentials, under one
    deadline (from construction: make one per operation)."""

    base_url: str
    auth_headers: Mapping[str, str]
    settings: HttpSettings = field(default_factory=HttpSettings)
    sleep: Callable[[float], None] = time.sleep
    session: requests.Session = field(default_factory=requests.Session)
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self.base_url = self.base_url.rstrip("/")
        self._deadline = time.monotonic() + self.settings.total_seconds
        # The environment's proxies apply, its .netrc credentials do not.
        self.session.trust_env = True
        self.session.headers["User-Agent"] = USER_AGENT

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.session.close()

    # --- one request, with retries ----------------------------------------------

    def url(self, path: str) -> str:
        return path if "://" in path else f"{self.base_url}/{path.lstrip('/')}"

    def _remaining(self) -> float:
        return self._deadline - time.monotonic()

    def _wait(self, seconds: float, why: str, *, status: int | None) -> None:
        """Sleep before another try, or give up (retryable) when the wait
        would pass the deadline."""
        if seconds >= self._remaining():
            raise ProviderApiError(
                f"{why}; giving up: waiting {seconds:.0f} s would pass the "
                f"{self.settings.total_seconds:.0f} s limit of the operation",
                status=status,
                retryable=True,
                retry_after=seconds,
            )
        log.info("%s; trying again in %.2f s", why, seconds)
        self.sleep(seconds)

    def _backoff(self, attempt: int) -> float:
        return float(
            min(
                self.settings.max_backoff_seconds,
                self.settings.backoff_seconds * 2 ** (attempt - 1),
            )
        )

    def _send(
        self,
        method: str,
        url: str,
        *,
        params: Mapping[str, Any] | None,
        stream: bool,
        body: Any = None,
    ) -> requests.Response:
        """One request, following redirects by hand: the provider's own
        headers go only to the host they were given for."""
        origin = urlsplit(self.base_url).netloc
        for _ in range(MAX_REDIRECTS + 1):
            remaining = self._remaining()
            if remaining <= 0:
                raise ProviderApiError(
                    f"{method} {_where(url)}: the operation's "
                    f"{self.settings.total_seconds:.0f} s limit passed",
                    retryable=True,
                )
            headers = dict(self.auth_headers) if urlsplit(url).netloc == origin else {}
            response = self.session.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                timeout=(
                    min(self.settings.connect_timeout, remaining),
                    min(self.settings.read_timeout, remaining),
                ),
                allow_redirects=False,
                stream=stream,
            )
            if not response.is_redirect:
                return response
            location = response.headers.get("Location", "")
            response.close()
            url, params = urljoin(url, location), None
        raise ProviderApiError(f"{method} {_where(url)}: more than {MAX_REDIRECTS} redirects")

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        stream: bool = False,
        body: Any = None,
    ) -> requests.Response:
        """A successful (2xx) answer, after the retries worth making;
        ProviderApiError otherwise. `body`: a JSON document to send (a POST
        riskrank makes is one that may be repeated: a commit status)."""
        url = self.url(path)
        for attempt in range(1, self.settings.max_attempts + 1):
            last = attempt == self.settings.max_attempts
            try:
                response = self._send(method, url, params=params, stream=stream, body=body)
            except (requests.Timeout, requests.ConnectionError) as error:
                why = f"{method} {_where(url)}: {type(error).__name__}"
                if last:
                    raise ProviderApiError(
                        f"{why} after {attempt} attempts", retryable=True
                    ) from None
                self._wait(self._backoff(attempt), why, status=None)
                continue
            except requests.RequestException as error:
                raise ProviderApiError(f"{method} {_where(url)}: {type(error).__name__}") from None
            status = response.status_code
            if 200 <= status < 300:
                return response
            why = f"{method} {_where(url)}: HTTP {status}"
            response.close()
            if _is_rate_limited(response):
                wait = _header_seconds(response.headers, time.time())
                why += " (rate limited)"
                if last:
                    raise ProviderApiError(why, status=status, retryable=True, retry_after=wait)
                self._wait(wait if wait is not None else self._backoff(attempt), why, status=status)
            elif status in RETRIED_STATUSES:
                if last:
                    raise ProviderApiError(
                        f"{why} after {attempt} attempts", status=status, retryable=True
                    )
                self._wait(self._backoff(attempt), why, status=status)
            else:
                raise ProviderApiError(why, status=status)
        raise AssertionError("unreachable: the last attempt returns or raises")

    # --- what the providers' modules use -----------------------------------------

    def get_json(self, path: str, *, params: Mapping[str, Any] | None = None) -> Any:
        response = self.request("GET", path, params=params)
        try:
            return response.json()
        except ValueError:
            raise ProviderApiError(
                f"GET {_where(response.url)}: the answer is not JSON", status=response.status_code
            ) from None

    def post_json(self, path: str, document: Any) -> Any:
        response = self.request("POST", path, body=document)
        try:
            return response.json()
        except ValueError:
            return None

    def pages(self, path: str, *, params: Mapping[str, Any] | None = None) -> Iterator[Any]:
        """Every page's JSON, following `Link: <…>; rel="next"` (GitHub, and
        GitLab's offset pagination), else GitLab's `X-Next-Page`."""
        url: str | None = self.url(path)
        query: dict[str, Any] | None = dict(params or {})
        for _ in range(MAX_PAGES):
            assert url is not None
            response = self.request("GET", url, params=query)
            try:
                yield response.json()
            except ValueError:
                raise ProviderApiError(
                    f"GET {_where(url)}: the answer is not JSON", status=response.status_code
                ) from None
            next_link = response.links.get("next", {}).get("url")
            next_page = response.headers.get("X-Next-Page", "").strip()
            if next_link:
                # The link carries every parameter (and must stay on this API).
                url, query = urljoin(url, next_link), None
                if urlsplit(url).netloc != urlsplit(self.base_url).netloc:
                    raise ProviderApiError(f"a next page on another host: {_where(url)}")
            elif next_page.isdigit():
                query = {**(query or {}), "page": next_page}
            else:
                return
        raise ProviderApiError(f"GET {_where(self.url(path))}: more than {MAX_PAGES} pages")

    def download(self, path: str, *, max_bytes: int | None = None) -> bytes:
        """A file's bytes (after redirects), refused past `max_bytes`."""
        limit = max_bytes if max_bytes is not None else self.settings.max_download_bytes
        response = self.request("GET", path, stream=True)
        with response:
            declared = response.headers.get("Content-Length", "")
            if declared.isdigit() and int(declared) > limit:
                raise ProviderApiError(
                    f"GET {_where(path)}: {declared} bytes, over the limit of {limit}"
                )
            chunks: list[bytes] = []
            size = 0
            try:
                for chunk in response.iter_content(chunk_size=1 << 16):
                    size += len(chunk)
                    if size > limit:
                        raise ProviderApiError(
                            f"GET {_where(path)}: over the limit of {limit} bytes"
                        )
                    chunks.append(chunk)
            except (requests.Timeout, requests.ConnectionError) as error:
                raise ProviderApiError(
                    f"GET {_where(path)}: {type(error).__name__} while downloading",
                    retryable=True,
                ) from None
        return b"".join(chunks)
