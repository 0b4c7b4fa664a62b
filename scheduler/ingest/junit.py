"""JUnit XML reports read into CaseResults (pure functions).

JUnit XML has no single specification: pytest, Maven Surefire and Gradle,
jest-junit, mocha, go-junit-report and gotestsum, CTest, PHPUnit, Playwright,
Karma, Cypress, the .NET loggers, Robot Framework, Bazel, RSpec, googletest,
Catch2, CUnit, ScalaTest and Marathon each write their own dialect. What they
share, and all that is read here:

- The root is `<testsuites>`, `<testsuite>` or a bare `<testcase>`; suites
  nest to any depth and every `<testcase>` anywhere in them is a test.
  Anything a suite says about itself (counts, properties, a suite-level
  `<error>` with no testcase) is not a test result and is not read.
- Outcome: an `<error>` child is ERROR, else `<failure>` is FAILED, else
  `<skipped>` is SKIPPED (a testcase may carry several; the worst wins). With
  none of them, a `status` or `result` attribute that says so (googletest
  `notrun`/`suppressed`, tst `disabled`, CTest `fail`) is honoured, and the
  rest is PASSED. `message` is the result's `message` attribute, else the
  first line of its text, cut to 1000 characters.
- Duration: `time` in seconds; a thousands comma, a decimal comma, a unit
  (`s`, `ms`) are read; a missing, unreadable, negative or infinite time is
  None.
- Attempts: Surefire's `<flakyFailure>`/`<flakyError>` (and a `<rerun>`)
  are failed attempts before the testcase's own result, which is the last
  attempt; `<rerunFailure>`/`<rerunError>` are the attempts after the
  testcase's own failure, which is the first. A test id that comes back in a
  later `<testcase>` of the same report continues its attempts, in document
  order (gotestsum's `--rerun-fails`, pytest-rerunfailures).
- Projects: Playwright reports a test once per project (chromium, firefox,
  …) and names the project only in the suite's `hostname`. One machine writes
  one report, so where the suites of a report carry more than one hostname,
  the hostname is a configuration and ends the id in brackets
  (`tests/a.spec.ts::adds an item [firefox]`): a test failing on one browser
  only is that browser's test failing, not a flaky one. A single hostname is
  a machine name and is never part of an id.

Test ids (`scheduler.ingest.testid`) are made from the testcase's `name`,
`classname` and `file` attributes. Where a report keeps location elsewhere:

- A testsuite's `file` (mocha, Jest, Cypress put it there) goes into the id
  only for a testcase with neither classname nor file, where it is all that
  tells tests of different files apart. Where the testcase has a classname,
  its id stays `classname::name` whether or not the suite's file is written
  (a reporter option) and however the path is rooted (often absolute, so it
  changes from machine to machine): the id is stable.
- A testcase with no classname and no file at all takes the name of its
  nearest named testsuite in their place (Jenkins does the same), so Go's
  `TestMain` of two packages, or a top-level Jest test of two files, stay two
  tests. A suite name that looks like a path to a file (jest-junit's
  `__tests__\\main.test.js`) is read as the file, with forward slashes.

`CaseResult.file` is the testcase's `file`, else its nearest suite's, else the
one file every suite of the report names (Cypress writes it on the root suite
only), normalised; never a suite's name.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field

from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)
from defusedxml.ElementTree import DefusedXMLParser, ParseError

from scheduler.ingest.errors import BodyTooLarge, IngestError, MalformedPayload
from scheduler.ingest.payload import GZIP_MAGIC, gunzip_capped
from scheduler.ingest.results import CaseResult
from scheduler.ingest.testid import canonical_test_id, normalise_path
from scheduler.models.enums import Outcome

log = logging.getLogger(__name__)

MAX_BYTES = 25 * 1024 * 1024
MESSAGE_LIMIT = 1000
# Text kept of a result element: enough for its first line, not its megabytes
# of log.
_TEXT_LIMIT = 16 * 1024
_BOM = b"\xef\xbb\xbf"
_SPACE = b" \t\r\n"

ROOTS = frozenset({"testsuites", "testsuite", "testcase"})
# The worst result child decides the outcome.
_RESULTS = {"error": Outcome.ERROR, "failure": Outcome.FAILED, "skipped": Outcome.SKIPPED}
_SEVERITY = {Outcome.ERROR: 3, Outcome.FAILED: 2, Outcome.SKIPPED: 1, Outcome.PASSED: 0}
_BEFORE = {"flakyfailure": Outcome.FAILED, "flakyerror": Outcome.ERROR, "rerun": Outcome.FAILED}
_AFTER = {"rerunfailure": Outcome.FAILED, "rerunerror": Outcome.ERROR}
_CHILDREN = frozenset({*_RESULTS, *_BEFORE, *_AFTER})
# `status`/`result` values that mean something other than "it ran", when no
# result child says more.
_STATUS = {
    "notrun": Outcome.SKIPPED,
    "not run": Outcome.SKIPPED,
    "disabled": Outcome.SKIPPED,
    "suppressed": Outcome.SKIPPED,
    "skipped": Outcome.SKIPPED,
    "skip": Outcome.SKIPPED,
    "ignored": Outcome.SKIPPED,
    "pending": Outcome.SKIPPED,
    "failed": Outcome.FAILED,
    "fail": Outcome.FAILED,
    "failure": Outcome.FAILED,
    "errored": Outcome.ERROR,
    "error": Outcome.ERROR,
}
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(,\d{3})+(\.\d*)?")
# A suite name read as a file: a path whose last part has an extension.
_FILE_LIKE = re.compile(r"\S*[/\\][^/\\\s]*\.[A-Za-z0-9]+")


def parse_seconds(value: str | None) -> float | None:
    """A `time` attribute in seconds, or None when it says nothing usable.

    `1,234.5` has a thousands comma; a lone comma without a dot (`0,5`) is a
    decimal comma; `12s` and `12ms` carry their unit."""
    if value is None:
        return None
    try:
        seconds: float | None = float(value)  # what nearly every report writes
    except ValueError:
        seconds = _unusual_seconds(value)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _unusual_seconds(value: str) -> float | None:
    text = value.strip().lower()
    scale = 1.0
    if text.endswith("ms"):
        text, scale = text[:-2].strip(), 0.001
    elif text.endswith("s"):
        text = text[:-1].strip()
    if "," in text:
        if _THOUSANDS.fullmatch(text):
            text = text.replace(",", "")
        elif text.count(",") == 1 and "." not in text:
            text = text.replace(",", ".")
        else:
            return None
    try:
        return float(text) * scale
    except ValueError:
        return None


_LOCAL_NAMES: dict[str, str] = {}


def _local(tag: str) -> str:
    # Tags are compared without their namespace and case, which no dialect
    # uses to mean anything different. A report repeats a handful of tags.
    local = _LOCAL_NAMES.get(tag)
    if local is None:
        local = tag.rpartition("}")[2].lower()
        if len(_LOCAL_NAMES) < 1024:
            _LOCAL_NAMES[tag] = local
    return local


def _value(attributes: dict[str, str], name: str) -> str | None:
    """An attribute, None when it is missing or blank."""
    value = attributes.get(name)
    if value is None or not value.strip():
        return None
    return value


@dataclass(frozen=True)
class _Suite:
    """What the enclosing testsuites say about a testcase's location."""

    name: str | None = None
    file: str | None = None  # normalised
    hostname: str | None = None


@dataclass(slots=True)
class _Child:
    """A result or rerun element of a testcase, with the start of its text."""

    tag: str
    attributes: dict[str, str]
    text: list[str] = field(default_factory=list)
    trace: list[str] = field(default_factory=list)  # Surefire's <stackTrace>


@dataclass(slots=True)
class _Case:
    attributes: dict[str, str]
    suite: _Suite
    children: list[_Child] = field(default_factory=list)


class _Reader:
    """Takes expat's events for one report and keeps the testcases, their
    result children and the start of those children's text: nothing else of
    a report (logs, properties) is held."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.cases: list[_Case] = []
        self.suite_files: set[str] = set()
        self.hostnames: set[str] = set()
        self._suites = [_Suite()]
        self._case: _Case | None = None
        self._depth = 0  # elements open inside the current testcase
        self._child: _Child | None = None
        self._sink: list[str] | None = None  # where character data goes
        self._room = 0

    def _listen(self, sink: list[str] | None) -> None:
        self._sink = sink
        self._room = _TEXT_LIMIT - sum(map(len, sink)) if sink is not None else 0

    def start(self, tag: str, attributes: dict[str, str]) -> None:
        local = _local(tag)
        if self._case is not None:
            self._depth += 1
            if self._depth == 1:
                self._child = _Child(local, attributes) if local in _CHILDREN else None
                self._listen(self._child.text if self._child is not None else None)
            elif self._depth == 2 and self._child is not None and local == "stacktrace":
                self._listen(self._child.trace)
            else:
                self._listen(None)
            return
        if self.root is None:
            self.root = local
            if local not in ROOTS:
                raise MalformedPayload(
                    f"the report's root element is <{local}>: expected <testsuites>, "
                    "<testsuite> or <testcase>"
                )
        if local == "testcase":
            self._case = _Case(attributes, self._suites[-1])
        elif local == "testsuite":
            parent = self._suites[-1]
            file = _value(attributes, "file")
            if file is not None:
                file = normalise_path(file)
                self.suite_files.add(file)
            hostname = _value(attributes, "hostname")
            if hostname:
                self.hostnames.add(hostname)
            self._suites.append(
                _Suite(
                    name=_value(attributes, "name") or parent.name,
                    file=file or parent.file,
                    hostname=hostname or parent.hostname,
                )
            )

    def end(self, tag: str) -> None:
        if self._case is not None:
            if self._depth == 0:
                self.cases.append(self._case)
                self._case = None
                return
            if self._depth == 1:
                if self._child is not None:
                    self._case.children.append(self._child)
                self._child = None
                self._listen(None)
            elif self._depth == 2 and self._child is not None:
                self._listen(self._child.text)
            self._depth -= 1
            return
        if _local(tag) == "testsuite":
            self._suites.pop()

    def data(self, text: str) -> None:
        if self._sink is not None and self._room > 0:
            self._sink.append(text[: self._room])
            self._room -= len(text)


def _first_line(parts: list[str]) -> str | None:
    for line in "".join(parts).splitlines():
        if line.strip():
            return line.strip()
    return None


def _clip(text: str) -> str:
    return text.strip().replace("\r\n", "\n")[:MESSAGE_LIMIT]


def _message(child: _Child) -> str | None:
    """The `message` attribute, else the first line of the text (a Surefire
    rerun keeps its text in a `<stackTrace>`)."""
    message = _value(child.attributes, "message")
    if message is not None:
        return _clip(message)
    line = _first_line(child.text) or _first_line(child.trace)
    return _clip(line) if line else None


@dataclass(slots=True)
class _Attempt:
    outcome: Outcome
    duration: float | None
    message: str | None


def _attempts(case: _Case) -> list[_Attempt]:
    """The attempts one testcase reports, in the order they ran."""
    duration = parse_seconds(case.attributes.get("time"))
    if not case.children and "status" not in case.attributes and "result" not in case.attributes:
        return [_Attempt(Outcome.PASSED, duration, None)]  # most testcases
    before: list[_Attempt] = []
    after: list[_Attempt] = []
    outcome = Outcome.PASSED
    result: _Child | None = None
    for child in case.children:
        if child.tag in _RESULTS:
            if _SEVERITY[_RESULTS[child.tag]] > _SEVERITY[outcome]:
                outcome, result = _RESULTS[child.tag], child
            continue
        rerun = _Attempt(
            _BEFORE.get(child.tag) or _AFTER[child.tag],
            parse_seconds(child.attributes.get("time")),
            _message(child),
        )
        (before if child.tag in _BEFORE else after).append(rerun)
    if result is None:
        for name in ("status", "result"):
            value = case.attributes.get(name)
            said = _STATUS.get(value.strip().lower()) if value else None
            if said is not None:
                outcome = said
                break
    own = _Attempt(outcome, duration, _message(result) if result is not None else None)
    return [*before, own, *after]


def _test_id(case: _Case, file: str | None, ordinal: int) -> str:
    name = _value(case.attributes, "name")
    if name is None:
        raise MalformedPayload(f"testcase number {ordinal} in the report has no name")
    classname = _value(case.attributes, "classname")
    if file is None and classname is None:
        suite = case.suite
        if suite.file is not None:
            file = suite.file
        elif suite.name is not None and _FILE_LIKE.fullmatch(suite.name.strip()):
            file = suite.name
        else:
            classname = suite.name
    return canonical_test_id(name=name, classname=classname, file=file)


def _results(reader: _Reader) -> list[CaseResult]:
    only_file = next(iter(reader.suite_files)) if len(reader.suite_files) == 1 else None
    by_project = len(reader.hostnames) > 1
    attempts_so_far: dict[str, int] = {}
    normalised: dict[str, str] = {}  # thousands of testcases name the same few files
    results: list[CaseResult] = []
    for ordinal, case in enumerate(reader.cases, start=1):
        own_file = _value(case.attributes, "file")
        test = _test_id(case, own_file, ordinal)
        if by_project and case.suite.hostname:
            test = f"{test} [{case.suite.hostname}]"
        if own_file is not None:
            file: str | None = normalised.get(own_file)
            if file is None:
                file = normalised.setdefault(own_file, normalise_path(own_file))
        else:
            file = case.suite.file or only_file
        attempt = attempts_so_far.get(test, 0)
        for run in _attempts(case):
            attempt += 1
            results.append(
                CaseResult(
                    test=test,
                    outcome=run.outcome,
                    duration=run.duration,
                    attempt=attempt,
                    file=file,
                    message=run.message,
                )
            )
        attempts_so_far[test] = attempt
    return results


def _unsafe(data: bytes, error: DefusedXmlException) -> MalformedPayload:
    # A DTD is refused where it starts, before its entity declarations are
    # read: say "entities" when the document has some, that is the attack.
    if isinstance(error, EntitiesForbidden) or (
        isinstance(error, DTDForbidden) and b"<!ENTITY" in data
    ):
        return MalformedPayload("XML entities are not accepted in test reports")
    if isinstance(error, DTDForbidden):
        return MalformedPayload(
            "XML document type declarations (<!DOCTYPE>) are not accepted in test reports"
        )
    if isinstance(error, ExternalReferenceForbidden):
        return MalformedPayload("external references in XML are not accepted in test reports")
    return MalformedPayload(f"the report uses XML features that are not accepted: {error}")


def _read(data: bytes) -> _Reader:
    head = data[:1024].lstrip(_BOM + _SPACE).lower()
    if not head and not data.strip(_BOM + _SPACE):
        raise MalformedPayload("the report is empty: expected JUnit XML")
    if head.startswith((b"<!doctype html", b"<html")):
        raise MalformedPayload("the report is an HTML page, not JUnit XML")
    reader = _Reader()
    parser = DefusedXMLParser(
        target=reader, forbid_dtd=True, forbid_entities=True, forbid_external=True
    )
    # The reader takes expat's element events itself rather than through
    # ElementTree's handlers, which build a dict of every element's attributes
    # in Python first: that halves the time of a large report. defusedxml's
    # handlers, which refuse DTDs, entities and external references, stay.
    expat = parser.parser
    expat.ordered_attributes = False
    expat.StartElementHandler = reader.start
    expat.EndElementHandler = reader.end
    expat.CharacterDataHandler = reader.data
    try:
        parser.feed(data)
        parser.close()
    except DefusedXmlException as error:
        raise _unsafe(data, error) from None
    except ParseError as error:
        if head.startswith((b"{", b"[")):
            raise MalformedPayload(
                "the report is JSON, not JUnit XML (send results JSON as application/json)"
            ) from None
        raise MalformedPayload(f"the report is not well-formed XML: {error}") from None
    return reader


def parse_junit(data: bytes, *, max_bytes: int = MAX_BYTES) -> list[CaseResult]:
    """Every attempt of every test a JUnit XML report (plain or gzip) lists.

    Refuses with BodyTooLarge a report, or its inflated gzip, over
    `max_bytes`; with MalformedPayload a DTD, entities or external references
    (defusedxml), and anything else it cannot read: nothing else escapes,
    whatever the bytes."""
    if len(data) > max_bytes:
        raise BodyTooLarge(f"the report is larger than {max_bytes} bytes")
    try:
        if data.startswith(GZIP_MAGIC):
            data = gunzip_capped(data, max_bytes=max_bytes)
        return _results(_read(data))
    except IngestError:
        raise
    except Exception as error:
        # A report that trips the parser in a way not foreseen above is still
        # the sender's report that cannot be read; the log keeps the trace.
        log.exception("unexpected error reading a JUnit report")
        raise MalformedPayload(
            f"the report could not be read as JUnit XML ({type(error).__name__})"
        ) from None
