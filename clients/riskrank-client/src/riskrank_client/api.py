"""The riskrank HTTP API as its clients use it (this package's commands and
the pytest plugin). Every failure is a `RiskrankError` whose message fits in
one line of terminal output; nothing else escapes. One call never takes
longer than the client's timeout, retries included.

This module imports requests: the command line imports it only once it is
about to send something, so that `--help` stays fast."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from riskrank_client import __version__
from riskrank_client.ci import display_url
from riskrank_client.options import MAX_BACKOFF_SECONDS

MAX_ANSWER_BYTES = 1024 * 1024
# A plan lists every test with a reason: some 250 bytes a test.
MAX_PLAN_BYTES = 64 * 1024 * 1024
# Below this much time left, another try could not finish: give up instead.
MIN_TRY_SECONDS = 0.2
USER_AGENT = f"riskrank-client/{__version__}"


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
    """riskrank's answer to an upload or an event: "queued" or "duplicate",
    and the run (or event) and its number of tests where it says them."""

    status: str
    run_id: int | None
    tests: int | None = None


@dataclass(frozen=True)
class PlannedTest:
    """One test of a plan, as far as the clients need it."""

    test: str
    selected: bool
    rank: int | None = None
    rule: str | None = None


@dataclass(frozen=True)
class PlanAnswer:
    """riskrank's plan: `tests` in run order (the selected ones first), and
    the figures for a summary line. `run_all`: riskrank cannot name the tests
    to run, so the whole suite must run."""

    plan_id: int | None
    status: str
    tests: tuple[PlannedTest, ...]
    total: int | None = None
    model_version: int | None = None
    full_run: bool = False
    full_run_reason: str | None = None
    duration_dropped: float | None = None
    expected_failures_dropped: float | None = None
    # The chance that a dropped test fails (None: a server from before it).
    miss_probability: float | None = None
    message: str | None = None
    run_all: bool = False
    # Run the dropped tests too once this many watched tests failed
    # (riskrank_client.expansion); None: never (or a server from before it).
    expand_after: int | None = None


def _number(data: Mapping[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{key!r} is not a number")
    return float(value)


def _integer(data: Mapping[str, Any], key: str) -> int | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{key!r} is not an integer")
    return value


def _text(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{key!r} is not a string")
    return value


def _flag(data: Mapping[str, Any], key: str) -> bool | None:
    value = data.get(key)
    if value is not None and not isinstance(value, bool):
        raise ValueError(f"{key!r} is not a boolean")
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
    total = _integer(data, "total")
    run_all = _flag(data, "run_all")
    if run_all is None:
        # A server from before `run_all`: a plan of no test cannot mean "run nothing".
        run_all = (total if total is not None else len(planned)) == 0
    return PlanAnswer(
        plan_id=_integer(data, "plan_id"),
        status=status,
        tests=tuple(planned),
        total=total,
        model_version=_integer(data, "model_version"),
        full_run=bool(_flag(data, "full_run")),
        full_run_reason=_text(data, "full_run_reason"),
        duration_dropped=_number(data, "duration_dropped"),
        expected_failures_dropped=_number(data, "expected_failures_dropped"),
        miss_probability=_number(data, "miss_probability"),
        message=_text(data, "message"),
        run_all=run_all,
        expand_after=_integer(data, "expand_after"),
    )


class _Bearer(requests.auth.AuthBase):
    # Passing auth explicitly also stops requests from replacing the header
    # with credentials from a ~/.netrc entry for the same host.
    def __init__(self, token: str | None) -> None:
        self.token = token

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if self.token is not None:
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


def _receipt(data: Any, key: str, where: str) -> Receipt:
    """An upload's or an event's answer: {"status": ..., key: id, "tests": n}."""
    if not isinstance(data, dict):
        raise BadAnswer(f"unexpected answer from {where} (not a JSON object)")
    status = data.get("status")
    number = data.get(key)
    tests = data.get("tests")
    if (
        not isinstance(status, str)
        or not (number is None or isinstance(number, int))
        or not (tests is None or isinstance(tests, int))
    ):
        raise BadAnswer(f"unexpected answer from {where}: {_one_line(json.dumps(data))}")
    return Receipt(status=status, run_id=number, tests=tests)


def _repository_path(owner: str, name: str) -> str:
    return f"/api/v1/repos/{quote(owner, safe='/')}/{quote(name, safe='')}"


@dataclass(frozen=True)
class _Body:
    data: bytes
    headers: Mapping[str, str]


class Client:
    """riskrank at `base_url`. `timeout` bounds each call, retries included;
    with `try_timeout`, each try is bounded by it too and a try that timed
    out is tried again (the upload command's `--timeout` is per request)."""

    def __init__(
        self,
        base_url: str,
        token: str | None,
        *,
        timeout: float,
        tries: int = 2,
        backoff: float = 0.5,
        try_timeout: float | None = None,
        user_agent: str = USER_AGENT,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.tries = max(1, tries)
        self.backoff = backoff
        self.try_timeout = try_timeout
        self.user_agent = user_agent
        self._clock = clock
        self._sleep = sleep

    @property
    def display_url(self) -> str:
        return display_url(self.base_url)

    def upload_run(self, owner: str, name: str, payload: dict[str, Any]) -> Receipt:
        """POST one run's results as JSON. Raises RiskrankError."""
        data = self._request("POST", f"{_repository_path(owner, name)}/runs", _json(payload))
        return _receipt(data, "run_id", self.display_url)

    def upload_report(
        self,
        owner: str,
        name: str,
        report: bytes,
        *,
        content_type: str,
        gzipped: bool,
        params: Mapping[str, str],
    ) -> Receipt:
        """POST one report file as it is (JUnit XML or results JSON, maybe
        gzipped); `params` carry the commit and the build. Raises RiskrankError."""
        headers = {"Content-Type": content_type}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        data = self._request(
            "POST",
            f"{_repository_path(owner, name)}/runs",
            _Body(report, headers),
            params=params,
        )
        return _receipt(data, "run_id", self.display_url)

    def fetch_plan(self, owner: str, name: str, commit: str, body: dict[str, Any]) -> PlanAnswer:
        """POST for the commit's plan (the body holds the collected tests).
        Raises RiskrankError."""
        return self.fetch_plan_json(owner, name, commit, body)[1]

    def fetch_plan_json(
        self, owner: str, name: str, commit: str, body: dict[str, Any]
    ) -> tuple[dict[str, Any], PlanAnswer]:
        """The plan as riskrank answered it, and as checked."""
        path = f"{_repository_path(owner, name)}/plans/{quote(commit, safe='')}"
        data = self._request("POST", path, _json(body), limit=MAX_PLAN_BYTES)
        try:
            return data, parse_plan(data)
        except ValueError as error:
            raise BadAnswer(f"unexpected plan from {self.display_url} ({error})") from None

    def send_event(self, body: bytes, *, headers: Mapping[str, str]) -> Receipt:
        """POST a generic commit event (signed in `headers`). Raises RiskrankError."""
        data = self._request(
            "POST",
            "/webhooks/generic",
            _Body(body, {"Content-Type": "application/json", **headers}),
        )
        return _receipt(data, "event_id", self.display_url)

    def _request(
        self,
        method: str,
        path: str,
        body: _Body | None,
        *,
        params: Mapping[str, str] | None = None,
        limit: int = MAX_ANSWER_BYTES,
    ) -> Any:
        deadline = self._clock() + self.timeout
        last_error: RiskrankError | None = None
        for try_number in range(1, self.tries + 1):
            remaining = deadline - self._clock()
            if try_number > 1:
                pause = min(self.backoff * 2 ** (try_number - 2), MAX_BACKOFF_SECONDS)
                if remaining - pause < MIN_TRY_SECONDS:
                    break
                self._sleep(pause)
                remaining = deadline - self._clock()
            if self.try_timeout is not None:
                remaining = min(remaining, self.try_timeout)
            try:
                return self._try(
                    method,
                    path,
                    body,
                    params=params,
                    deadline=self._clock() + remaining,
                    remaining=remaining,
                    limit=limit,
                )
            except (Unreachable, _ServerError) as error:
                last_error = error
            except TimedOut as error:
                if self.try_timeout is None:
                    raise  # the whole call's time is up
                last_error = error
            # Everything else (a 4xx, garbage) would not get better.
        assert last_error is not None
        raise last_error

    def _timed_out(self) -> TimedOut:
        seconds = self.try_timeout if self.try_timeout is not None else self.timeout
        return TimedOut(f"no answer from {self.display_url} within {seconds:g}s")

    def _try(
        self,
        method: str,
        path: str,
        body: _Body | None,
        *,
        params: Mapping[str, str] | None,
        deadline: float,
        remaining: float,
        limit: int,
    ) -> Any:
        url = self.base_url + path
        if remaining <= 0:
            raise self._timed_out()
        headers = {"Accept": "application/json", "User-Agent": self.user_agent}
        if body is not None:
            headers.update(body.headers)
        try:
            with (
                requests.Session() as session,
                session.request(
                    method,
                    url,
                    data=None if body is None else body.data,
                    params=params,
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
            raise self._timed_out() from None
        except requests.ConnectionError as error:
            if _is_timeout(error):
                raise self._timed_out() from None
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
                raise self._timed_out()
        return b"".join(chunks)


def _json(payload: Mapping[str, Any]) -> _Body:
    return _Body(json.dumps(payload).encode(), {"Content-Type": "application/json"})
