"""The JUnit reports inside an artifact zip, read in memory with bounds."""

from __future__ import annotations

import io
import zipfile

import pytest

from scheduler.ingest.artifacts import ZipLimits, junit_reports
from scheduler.ingest.errors import BodyTooLarge, MalformedPayload
from scheduler.ingest.junit import parse_junit
from tests.fake_provider import zip_of

SUITE = b"""<?xml version="1.0"?><testsuite name="s">
<testcase classname="pkg.Test%s" name="test_a" time="0.1"/>
<testcase classname="pkg.Test%s" name="test_b"><failure message="x">boom</failure></testcase>
</testsuite>"""


def test_every_junit_file_is_read_and_other_files_passed_over() -> None:
    data = zip_of(
        {
            "unit/TEST-one.xml": SUITE % (b"One", b"One"),
            "integration/TEST-two.xml": SUITE % (b"Two", b"Two"),
            "pom.xml": b"<project><modelVersion>4.0.0</modelVersion></project>",
            "broken.xml": b"<testsuite><testcase",
            "coverage.json": b"{}",
            "__MACOSX/unit/._TEST-one.xml": b"\x00\x05\x16\x07",
        }
    )
    reports = junit_reports(data, ZipLimits())
    assert [report.path for report in reports] == ["unit/TEST-one.xml", "integration/TEST-two.xml"]
    tests = [result.test for report in reports for result in parse_junit(report.data)]
    assert tests == [
        "pkg.TestOne::test_a",
        "pkg.TestOne::test_b",
        "pkg.TestTwo::test_a",
        "pkg.TestTwo::test_b",
    ]


def test_only_the_wanted_paths_are_read() -> None:
    """A file whose path is not wanted is not even inflated: a bomb there
    does not count against the limit."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("reports/junit-unit.xml", SUITE % (b"One", b"One"))
        archive.writestr("other/TEST-bomb.xml", b"<testsuite>" + b" " * (2 << 20) + b"</testsuite>")
    reports = junit_reports(
        buffer.getvalue(),
        ZipLimits(max_total_bytes=1 << 20),
        wanted=lambda path: "junit" in path,
    )
    assert [report.path for report in reports] == ["reports/junit-unit.xml"]


def test_a_zip_bomb_stops_at_the_limit_whatever_the_directory_says() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("TEST-bomb.xml", b"<testsuite>" + b" " * (20 << 20) + b"</testsuite>")
    data = buffer.getvalue()
    assert len(data) < 100_000  # 20 MiB of spaces deflate to a few KiB
    with pytest.raises(BodyTooLarge, match="inflate past the limit"):
        junit_reports(data, ZipLimits(max_total_bytes=1 << 20))


def test_too_many_files_are_refused_before_any_is_read() -> None:
    data = zip_of({f"f{number}.txt": b"" for number in range(30)})
    with pytest.raises(BodyTooLarge, match="30 files, over the limit of 10"):
        junit_reports(data, ZipLimits(max_files=10))


def test_what_is_not_a_zip_is_refused() -> None:
    with pytest.raises(MalformedPayload, match="not a zip archive"):
        junit_reports(b"<testsuite/>", ZipLimits())
