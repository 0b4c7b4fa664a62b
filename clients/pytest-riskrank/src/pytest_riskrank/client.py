"""The riskrank HTTP API as the plugin uses it. Every failure is a
`RiskrankError` whose message fits in one line of terminal output; nothing
else escapes. One call never takes longer than the client's timeout, retries
included."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from pytest_riskrank import __version__
from pytest_riskrank.config import display_url

MAX_ANSWER_BYTES = 1024 * 1024
# A plan lists every test with a reason: some 250 bytes a test.
MAX_PLAN_BYTES = 64 * 1024 * 1024
# Below this much time left, another try could not finish: give up instead.
MIN_TRY_SECONDS = 0.2


class RiskrankError(Exception):
    """Talking to riskrank did not work; str() is the reason, for one line."""


class Unreachable(RiskrankError):
    pass


class TimedOut(RiskrankError):
    pass


class Refused(RiskrankError):
    """riskrank answered, but not with success."""

    def __init__(self, message: str, *, status_code: int, detail: str | None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.detail = detail


class _ServerError(Refused):
    """A 5xx: worth one more try."""


class BadAnswer(RiskrankError):
    """A success status with a body that is not what the API promises."""


@dataclass(frozen=True)
class Receipt:
    """riskrank's answer to an upload: "queued" or "duplicate", and the run."""

    status: str
    run_id: int | None


@dataclass(frozen=True)
class PlannedTest:
    """One test of a plan, as far as the plugin needs it."""

    test: str
    selected: bool
    rank: int | None = None
    rule: str | None = None


@dataclass(frozen=True)
class PlanAnswer:
    """riskrank's plan for the session: `tests` in run order (the selected
    ones first), and the figures for the summary line."""

    plan_id: int | None
    status: str
    tests: tuple[PlannedTest, ...]
    total: int | None = None
    model_version: int | None = None
    full_run: bool = False
    full_run_reason: str | None = None
    duration_dropped: float | None = None
    expected_failures_dropped: float | None = None
    message: str | None = None


def _number(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} is not a number")
    return float(value)


def _integer(data: dict[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} is not an integer")
    return value


def _text(data: dict[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


def parse_plan(data: Any) -> PlanAnswer:
    """A plan answer checked against the contract; ValueError says what is off."""
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    status = _text(data, "status")
    if status is None:
        raise ValueError("no 'status'")
    tests = data.get("tests")
    if not isinstance(tests, list):
        raise ValueError("'tests' is not a list")
    planned = []
    for entry in tests:
        if not isinstance(entry, dict):
            raise ValueError("an entry of 'tests' is not an object")
        test = entry.get("test")
        selected = entry.get("selected")
        if not isinstance(test, str) or not isinstance(selected, bool):
            raise ValueError("an entry of 'tests' lacks a string 'test' or a boolean 'selected'")
        planned.append(
            PlannedTest(
                test=test,
                selected=selected,
                rank=_integer(entry, "rank"),
                rule=_text(entry, "rule"),
            )
        )
    full_run = data.get("full_run", False)
    if not isinstance(full_run, bool):
        raise ValueError("'full_run' is not a boolean")
    return PlanAnswer(
        plan_id=_integer(data, "plan_id"),
        status=status,
        tests=tuple(planned),
        total=_integer(data, "total"),
        model_version=_integer(data, "model_version"),
        full_run=full_run,
        full_run_reason=_text(data, "full_run_reason"),
        duration_dropped=_number(data, "duration_dropped"),
        expected_failures_dropped=_number(data, "expected_failures_dropped"),
        message=_text(data, "message"),
    )


class _Bearer(requests.auth.AuthBase):
    # Passing auth explicitly also stops requests from replacing the header
    # with credentials from a ~/.netrc entry for the same host.
    def __init__(self, token: str) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers["Authorization"] = f"Bearer {self.token}"
        return request


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_connection_error(error: BaseException) -> str:
    """The operating system's reason under requests' and urllib3's wrappers,
    e.g. "Connection refused"."""
    for current in _chain(error):
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", str(error))
    if found:
        return found.group(1).strip()
    return type(error).__name__


def _is_timeout(error: BaseException) -> bool:
    """Whether a timeout hides under requests' wrappers (a read timeout while
    streaming the body comes out as a ConnectionError)."""
    return any(
        isinstance(current, TimeoutError) or "Timeout" in type(current).__name__
        for current in _chain(error)
    )


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and every exception nested in it (reason, cause, context,
    arguments), breadth first, each once."""
    seen: set[int] = set()
    pending: list[BaseException] = [error]
    while pending:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        pending.extend(_nested(current))


def _nested(error: BaseException) -> list[BaseException]:
    candidates = (getattr(error, "reason", None), error.__cause__, error.__context__, *error.args)
    return [nested for nested in candidates if isinstance(nested, BaseException)]


def _detail(body: bytes) -> str | None:
    """What a 4xx/5xx body says: FastAPI's {"detail": ...}, else the text."""
    try:
        data = json.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace").strip()
        return _one_line(text) if text else None
    if isinstance(data, dict) and "detail" in data:
        detail = data["detail"]
        if isinstance(detail, str):
            return _one_line(detail)
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            # Validation errors: [{"loc": [...], "msg": "..."}, ...]
            first = detail[0]
            where = ".".join(str(part) for part in first.get("loc", []))
            message = str(first.get("msg", ""))
            more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
            return _one_line(f"{where}: {message}{more}" if where else message + more)
        return _one_line(json.dumps(detail))
    return _one_line(json.dumps(data))


class Client:
    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        tries: int = 2,
        backoff: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.tries = max(1, tries)
        self.backoff = backoff
        self._clock = clock
        self._sleep = sleep

    @property
    def display_url(self) -> str:
        return display_url(self.base_url)

    def upload_run(self, owner: str, name: str, payload: dict[str, Any]) -> Receipt:
        """POST one run's results. Raises RiskrankError."""
        path = f"/api/v1/repos/{quote(owner, safe='/')}/{quote(name, safe='')}/runs"
        data = self._request("POST", path, payload)
        if not isinstance(data, dict):
            raise BadAnswer(f"unexpected answer from {self.display_url} (not a JSON object)")
        status = data.get("status")
        run_id = data.get("run_id")
        if not isinstance(status, str) or not (run_id is None or isinstance(run_id, int)):
            raise BadAnswer(
                f"unexpected answer from {self.display_url}: {_one_line(json.dumps(data))}"
            )
        return Receipt(status=status, run_id=run_id)

    def fetch_plan(self, owner: str, name: str, commit: str, body: dict[str, Any]) -> PlanAnswer:
        """POST for the commit's plan (the body holds the collected tests).
        Raises RiskrankError."""
        path = (
            f"/api/v1/repos/{quote(owner, safe='/')}/{quote(name, safe='')}"
            f"/plans/{quote(commit, safe='')}"
        )
        data = self._request("POST", path, body, limit=MAX_PLAN_BYTES)
        try:
            return parse_plan(data)
        except ValueError as error:
            raise BadAnswer(f"unexpected plan from {self.display_url} ({error})") from None

    def _request(
        self,
        method: str,
        path: str,
        payload: dict[str, Any] | None,
        *,
        limit: int = MAX_ANSWER_BYTES,
    ) -> Any:
        deadline = self._clock() + self.timeout
        body = None if payload is None else json.dumps(payload).encode()
        last_error: RiskrankError | None = None
        for try_number in range(1, self.tries + 1):
            remaining = deadline - self._clock()
            if try_number > 1:
                if remaining - self.backoff < MIN_TRY_SECONDS:
                    break
                self._sleep(self.backoff)
                remaining = deadline - self._clock()
            try:
                return self._try(
                    method, path, body, deadline=deadline, remaining=remaining, limit=limit
                )
            except (Unreachable, _ServerError) as error:
                last_error = error
            # Everything else (a timeout, a 4xx, garbage) would not get better.
        assert last_error is not None
        raise last_error

    def _try(
        self,
        method: str,
        path: str,
        body: bytes | None,
        *,
        deadline: float,
        remaining: float,
        limit: int,
    ) -> Any:
        url = self.base_url + path
        if remaining <= 0:
            raise TimedOut(f"no answer from {self.display_url} within {self.timeout:g}s")
        headers = {
            "Accept": "application/json",
            "User-Agent": f"pytest-riskrank/{__version__}",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        try:
            with (
                requests.Session() as session,
                session.request(
                    method,
                    url,
                    data=body,
                    headers=headers,
                    auth=_Bearer(self.token),
                    timeout=(remaining, remaining),
                    allow_redirects=False,
                    stream=True,
                ) as response,
            ):
                content = self._read(response, deadline, limit)
                status_code = response.status_code
                location = response.headers.get("Location")
        except requests.Timeout:
            raise TimedOut(f"no answer from {self.display_url} within {self.timeout:g}s") from None
        except requests.ConnectionError as error:
            if _is_timeout(error):
                raise TimedOut(
                    f"no answer from {self.display_url} within {self.timeout:g}s"
                ) from None
            reason = describe_connection_error(error)
            raise Unreachable(f"cannot reach {self.display_url} ({reason})") from None
        except requests.RequestException as error:
            raise BadAnswer(
                f"broken answer from {self.display_url} ({type(error).__name__})"
            ) from None

        if 200 <= status_code < 300:
            try:
                return json.loads(content)
            except ValueError:
                raise BadAnswer(
                    f"unexpected answer from {self.display_url} (HTTP {status_code}, not JSON)"
                ) from None
        if 300 <= status_code < 400:
            raise Refused(
                f"{self.display_url} redirects (HTTP {status_code} to {location}); "
                "check the riskrank URL",
                status_code=status_code,
                detail=location,
            )
        detail = _detail(content)
        message = f"{self.display_url} answered HTTP {status_code}" + (
            f": {detail}" if detail else ""
        )
        if status_code >= 500:
            raise _ServerError(message, status_code=status_code, detail=detail)
        raise Refused(message, status_code=status_code, detail=detail)

    def _read(self, response: requests.Response, deadline: float, limit: int) -> bytes:
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_content(chunk_size=64 * 1024):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise BadAnswer(
                    f"unexpected answer from {self.display_url} (over {limit >> 20} MiB)"
                )
            if self._clock() > deadline:
                raise TimedOut(f"no answer from {self.display_url} within {self.timeout:g}s")
        return b"".join(chunks)
