"""Reading JUnit XML: the real reports in ../shared/samples/dev/junit, whose
counts were taken by reading each file, and hand-written hostile or odd ones."""

import contextlib
import gzip
import random
import tracemalloc
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

from scheduler.ingest.errors import BodyTooLarge, IngestError, MalformedPayload
from scheduler.ingest.junit import MESSAGE_LIMIT, parse_junit, parse_seconds
from scheduler.ingest.results import CaseResult, ReportCounts, count_results, final_results
from scheduler.models.enums import Outcome

PASSED, FAILED, ERROR, SKIPPED = Outcome.PASSED, Outcome.FAILED, Outcome.ERROR, Outcome.SKIPPED
# What jest-junit and Playwright put between describe blocks (SINGLE RIGHT-POINTING
# ANGLE QUOTATION MARK), written as an escape so that no reader mistakes it for ">".
NEST = "\u203a"


@pytest.fixture(scope="session")
def junit_samples(shared_dir: Path) -> Path:
    return shared_dir / "samples" / "dev" / "junit"


def read(directory: Path, name: str) -> list[CaseResult]:
    return parse_junit((directory / name).read_bytes())


def counts(
    tests: int, passed: int, failures: int, errors: int, skipped: int, reruns: int
) -> ReportCounts:
    return ReportCounts(
        tests=tests, passed=passed, failures=failures, errors=errors, skipped=skipped, reruns=reruns
    )


@dataclass(frozen=True)
class Sample:
    counts: ReportCounts
    first: str  # the id of the report's first testcase
    outcomes: dict[str, Outcome]  # a few more ids, with their final outcome


# Counted by reading each file (see ../shared/samples/SOURCES.md for what
# each is). Notes on the ones that need one:
# - mocha-builtin: 109 testcases, but 9 repeat an earlier testcase's
#   classname and name (two its with one title in one describe, and "a b" /
#   "a  b", the same once whitespace is collapsed): 100 tests, 9 reruns.
# - playwright: each of the 31 tests is reported once per browser project
#   (chromium, firefox, webkit; the project is only in `hostname`): three
#   hostnames in one report make the project part of the id, 93 tests.
# - edge-nested: the <error> sits on a testsuite, not on a testcase: 2 tests.
# - tst: status='disabled' without a child is skipped; status='errored' has
#   an <error> child.
# - gotestsum: TestMain of package badmain has classname="": its suite's name
#   stands in; the header says tests="59" because it counts that one nowhere.
SAMPLES: dict[str, Sample] = {
    "pytest-xunit1-failure-skip-file-line.xml": Sample(
        counts(5, 3, 1, 0, 1, 0),
        "test/test_spark.py::SparkTests::test_check_shape_compatibility",
        {
            "test/test_spark.py::SparkTests::test_rsh_events": FAILED,
            "test/test_spark.py::SparkTests::test_get_available_devices": SKIPPED,
        },
    ),
    "pytest-xunit2-properties-xfail.xml": Sample(
        counts(10, 6, 2, 0, 2, 0),
        "tests.test_lib::test_always_pass",
        {
            "tests.test_lib::test_always_fail": FAILED,
            "tests.test_lib::test_expected_failure": SKIPPED,
            "tests.test_lib::test_parameterized[param2]": PASSED,
            "custom_classname::test_with_record_xml_attribute": PASSED,
        },
    ),
    "pytest-xunit1-single-line.xml": Sample(
        counts(3, 3, 0, 0, 0, 0),
        "test/test_interactiverun.py::InteractiveRunTests::test_failed_run",
        {"test/test_interactiverun.py::InteractiveRunTests::test_happy_run_elastic": PASSED},
    ),
    "surefire-failure-kotlin-cdata.xml": Sample(
        counts(2, 0, 2, 0, 0, 0),
        "action.surefire.report.calc.CalcUtilsTest::test error handling",
        {"action.surefire.report.calc.CalcUtilsTest::test scale": FAILED},
    ),
    "surefire-rerunFailure-always-failing.xml": Sample(
        counts(1, 0, 1, 0, 0, 3),
        "io.olamy.AlwaysFailTest::testApp",
        {"io.olamy.AlwaysFailTest::testApp": FAILED},
    ),
    "surefire-flakyFailure-passed-on-rerun.xml": Sample(
        counts(1, 1, 0, 0, 0, 2),
        "io.olamy.FlakyTest::testApp",
        {"io.olamy.FlakyTest::testApp": PASSED},
    ),
    "gradle-inner-class-dollar.xml": Sample(
        counts(4, 4, 0, 0, 0, 0),
        "com.launchableinc.rocket_car_gradle.AppTest::testAppHasAGreeting",
        {"com.launchableinc.rocket_car_gradle.AppTest$InnerClass::testAppHasAGreeting4": PASSED},
    ),
    "jest-junit-failures-windows-paths.xml": Sample(
        counts(6, 1, 4, 0, 1, 0),
        "Test 1::Passing test",
        {
            f"Test 1 {NEST} Test 1.1::Failing test": FAILED,
            "Test 2::Exception in test": FAILED,
            # classname="": the suite's name, a Windows path, is the location.
            "__tests__/second.test.js::Timeout test": FAILED,
            "__tests__/second.test.js::Skipped test": SKIPPED,
        },
    ),
    "mocha-junit-reporter-root-suite.xml": Sample(
        counts(1, 1, 0, 0, 0, 0),
        "projectUTCOffset should be a callable with current UTC offset::Config files default "
        "config projectUTCOffset should be a callable with current UTC offset",
        {},
    ),
    "mocha-builtin-xunit-rfc1123-timestamp.xml": Sample(
        counts(100, 100, 0, 0, 0, 9),
        "bibtexParser::parse a simple bib file",
        {
            'latexParser parse 2::parse Sch\\"onbrunner Schlo\\ss{} Stra\\ss e': PASSED,
            "latexParser stringify::test latexParser.stringify a b": PASSED,
            "latexParser matchers latexParser findNodeAt::test latexParser.findNodeAt": PASSED,
        },
    ),
    "go-junit-report-v2-pass-fail-skip.xml": Sample(
        counts(5, 2, 1, 0, 2, 0),
        "package/pass::TestPass",
        {"package/fail::TestOne": FAILED, "package/skip::TestSkipNow": SKIPPED},
    ),
    "go-junit-report-v2-data-race.xml": Sample(
        counts(1, 0, 1, 0, 0, 0),
        "package/name/race::TestRace",
        {"package/name/race::TestRace": FAILED},
    ),
    "gotestsum-subtests-failures.xml": Sample(
        counts(60, 42, 13, 0, 5, 0),
        "gotest.tools/gotestsum/testjson/internal/badmain::TestMain",
        {
            "gotest.tools/gotestsum/testjson/internal/badmain::TestMain": FAILED,
            "gotest.tools/gotestsum/testjson/internal/parallelfails::"
            "TestNestedParallelFailures/a": FAILED,
            "gotest.tools/gotestsum/testjson/internal/withfails::TestNestedSuccess/c/sub": PASSED,
            "gotest.tools/gotestsum/testjson/internal/withfails::TestTimeout": SKIPPED,
        },
    ),
    "ctest-output-junit.xml": Sample(
        counts(5, 5, 0, 0, 0, 0),
        "MyTestSuiteName.TestName::MyTestSuiteName.TestName",
        {
            "MyTestPattern/MyTestHelperPattern.TestName3/3::"
            "MyTestPattern/MyTestHelperPattern.TestName3/3": PASSED
        },
    ),
    "phpunit-nested-suites-assertions.xml": Sample(
        counts(30, 28, 2, 0, 0, 0),
        "/workspace/phpcheckstyle/test/CommentsTest.php::CommentsTest::testGoodDoc",
        {
            "/workspace/phpcheckstyle/test/OtherTest.php::OtherTest::testOther": FAILED,
            "/workspace/phpcheckstyle/test/OtherTest.php::OtherTest::testException": FAILED,
            "/workspace/phpcheckstyle/test/UnusedTest.php::UnusedTest::testBadUnused": PASSED,
        },
    ),
    "dotnet-junitxml-testlogger-bom.xml": Sample(
        counts(52, 32, 14, 0, 6, 0),
        "JUnit.Xml.TestLogger.NetFull.Tests.FailingOneTimeSetUp::TestA",
        {
            'JUnit.Xml.TestLogger.Tests2.ParametrizedTestCases::TestData(2,"B")': FAILED,
            'JUnit.Xml.TestLogger.NetFull.Tests.ParametrizedFixture("Question",1)::TestE': PASSED,
            "JUnit.Xml.TestLogger.Tests2.UnitTest2::WarningTest": SKIPPED,
        },
    ),
    "bazel-test-xml-error-cdata-log.xml": Sample(
        counts(1, 0, 0, 1, 0, 0),
        "bazel/failing_absl_test::bazel/failing_absl_test",
        {"bazel/failing_absl_test::bazel/failing_absl_test": ERROR},
    ),
    "rspec-junit-formatter.xml": Sample(
        counts(16, 16, 0, 0, 0, 0),
        "spec/models/article_spec.rb::spec.models.article_spec::"
        "Article validation is invalid without a title",
        {
            "spec/requests/comments_spec.rb::spec.requests.comments_spec::"
            "comments POST #create redirect to parent article page": PASSED
        },
    ),
    "playwright-junit-failures.xml": Sample(
        counts(93, 84, 3, 0, 6, 0),
        f"tests/demo-todo-app.spec.ts::New Todo {NEST} should allow me to add todo items"
        " [chromium]",
        {
            "tests/timeout-example.spec.ts::time-out [chromium]": FAILED,
            "tests/timeout-example.spec.ts::time-out [webkit]": FAILED,
            "tests/retry-example.spec.ts::skip this test [firefox]": SKIPPED,
            "tests/retry-and-skip-example.spec.ts::retry [webkit]": PASSED,
        },
    ),
    "googletest-failure.xml": Sample(
        counts(3, 2, 1, 0, 0, 0),
        "FooTest::Bar",
        {"FooTest::Bar": FAILED, "FooTest::Foo": PASSED},
    ),
    "catch2-failure-file-line.xml": Sample(
        counts(1, 0, 1, 0, 0, 0),
        "ut_detail_utility_is_constant_evaluated::is constant evaluated",
        {"ut_detail_utility_is_constant_evaluated::is constant evaluated": FAILED},
    ),
    "cunit-failure-id-attrs.xml": Sample(
        counts(4, 3, 1, 0, 0, 0),
        "DummyClass::DefaultCtor_When_ShouldTest",
        {"DummyClass::loadFromXMLString_When_Should2Test": FAILED},
    ),
    "tst-cpp-status-disabled-errored.xml": Sample(
        counts(31, 6, 19, 1, 5, 0),
        "factorial::positive_arguments_must_produce_expected_result[0]",
        {
            "factorial::test_which_throws_unknown_exception": ERROR,
            "factorial::disabled_param_test[3]": SKIPPED,
            "failing_checks::check_ne_print": FAILED,
        },
    ),
    "scalatest-properties-multiline-attrs.xml": Sample(
        counts(5, 5, 0, 0, 0, 0),
        "uk.co.gresearch.spark.diff.DiffOptionsSuite::diff options with empty diff column name",
        {"uk.co.gresearch.spark.diff.DiffOptionsSuite::fluent methods of diff options": PASSED},
    ),
    "marathon-flakyFailure-xsi.xml": Sample(
        counts(1, 1, 0, 0, 0, 1),
        "com.mikepenz.Class::testFlakyFailure",
        {"com.mikepenz.Class::testFlakyFailure": PASSED},
    ),
    "edge-nested-testsuites-3-levels.xml": Sample(
        counts(2, 2, 0, 0, 0, 0),
        "test.fs.FileSystemTest::testPrefix",
        {"test.db.DatabaseTest::testTable": PASSED},
    ),
    "edge-time-with-thousands-comma.xml": Sample(
        counts(8, 8, 0, 0, 0, 0),
        "test.fs.FileSystemTest1::testPrefix",
        {"test.Rest.delete::testInterface": PASSED, "test.Rest.cleanup::testFinish": PASSED},
    ),
    "edge-properties-on-testcase-multiline.xml": Sample(
        counts(2, 1, 1, 0, 0, 0),
        "io.jenkins.example.with.properties::testCaseA",
        {
            "io.jenkins.example.with.properties::testCaseA": FAILED,
            "io.jenkins.example.with.properties::testCaseZ": PASSED,
        },
    ),
    "edge-xml-entities-in-names.xml": Sample(
        counts(4, 0, 1, 1, 2, 0),
        'Test with "quotes" in the test name',
        {
            'Test with "quotes" in the test name': SKIPPED,
            "Test with 'apostrophe' in the test name": FAILED,
            "Test with & in the test name": ERROR,
            "Test with < and > in the test name": SKIPPED,
        },
    ),
    "edge-unicode-astral-chars.xml": Sample(
        counts(7, 1, 2, 2, 2, 0),
        "test/test-1.py::test 1 \ud5f4\u471d\ud5f1\ud650\u38c7\u3ff7\u452d"
        "\U0001237a\U000214ff\U00020109\u3993",
        {"test/test-4.py::test 4": FAILED, "test/test-7.py::test 7": ERROR},
    ),
    "edge-multiresult-skip-failure-error.xml": Sample(
        counts(4, 1, 1, 1, 1, 0),
        "test class::test that errors",
        {
            "test class::test that errors": ERROR,
            "test class::test that fails": FAILED,
            "test class::test that is skipped": SKIPPED,
            "test class::test that succeeds": PASSED,
        },
    ),
}


def test_every_sample_has_its_expectations(junit_samples: Path) -> None:
    assert {path.name for path in junit_samples.iterdir()} == set(SAMPLES)


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_counts_and_ids(junit_samples: Path, name: str) -> None:
    sample = SAMPLES[name]
    results = read(junit_samples, name)
    assert count_results(results) == sample.counts
    assert results[0].test == sample.first
    final = final_results(results)
    assert {test: final[test].outcome for test in sample.outcomes if test in final} == (
        sample.outcomes
    )


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_sample_read_gzipped_is_the_same(junit_samples: Path, name: str) -> None:
    data = (junit_samples / name).read_bytes()
    assert parse_junit(gzip.compress(data)) == parse_junit(data)


# --- what the samples say beyond their counts -------------------------------------


def attempts(results: list[CaseResult], test: str) -> list[tuple[int, Outcome, str | None]]:
    return [(r.attempt, r.outcome, r.message) for r in results if r.test == test]


def test_surefire_flaky_failures_are_the_attempts_before_the_pass(junit_samples: Path) -> None:
    results = read(junit_samples, "surefire-flakyFailure-passed-on-rerun.xml")
    assert attempts(results, "io.olamy.FlakyTest::testApp") == [
        (1, FAILED, "obvious fail"),
        (2, FAILED, "try one more time maybe"),
        (3, PASSED, None),
    ]
    assert [r.duration for r in results] == [None, None, 0.001]


def test_surefire_rerun_failures_are_the_attempts_after_the_failure(junit_samples: Path) -> None:
    results = read(junit_samples, "surefire-rerunFailure-always-failing.xml")
    assert attempts(results, "io.olamy.AlwaysFailTest::testApp") == [
        (1, FAILED, "built to fail"),
        (2, FAILED, "built to fail"),
        (3, FAILED, "built to fail"),
        (4, FAILED, "built to fail"),
    ]
    assert results[0].duration == 0.001


def test_marathon_flaky_failure_message_comes_from_its_stack_trace(junit_samples: Path) -> None:
    results = read(junit_samples, "marathon-flakyFailure-xsi.xml")
    assert attempts(results, "com.mikepenz.Class::testFlakyFailure") == [
        (1, FAILED, "junit.framework.AssertionFailedError"),
        (2, PASSED, None),
    ]
    assert results[1].duration == 1.86


def test_playwright_projects_are_tests_of_their_own(junit_samples: Path) -> None:
    results = read(junit_samples, "playwright-junit-failures.xml")
    timeout = [r for r in results if r.test.startswith("tests/timeout-example.spec.ts::time-out")]
    assert [(r.test.rsplit(" ", 1)[1], r.attempt, r.outcome, r.duration) for r in timeout] == [
        ("[chromium]", 1, FAILED, 0.298),
        ("[firefox]", 1, FAILED, 1.287),
        ("[webkit]", 1, FAILED, 0.614),
    ]
    assert timeout[0].message == "timeout-example.spec.ts:3:5 time-out"


def test_one_hostname_is_a_machine_not_part_of_the_id() -> None:
    report = (
        b'<testsuites><testsuite name="s" hostname="ci-runner-7">'
        b'<testcase classname="C" name="t"/></testsuite></testsuites>'
    )
    assert [r.test for r in parse_junit(report)] == ["C::t"]


def test_pytest_file_and_messages(junit_samples: Path) -> None:
    results = read(junit_samples, "pytest-xunit1-failure-skip-file-line.xml")
    assert {r.file for r in results} == {"test/test_spark.py"}
    by_test = {r.test: r for r in results}
    failed = by_test["test/test_spark.py::SparkTests::test_rsh_events"]
    assert failed.message is not None
    assert failed.message.startswith("self = <test_spark.SparkTests testMethod=test_rsh_events>")
    assert failed.message.endswith("E   AssertionError: 143 != 0")
    assert failed.duration == 7.541
    skipped = by_test["test/test_spark.py::SparkTests::test_get_available_devices"]
    assert skipped.message == "get_available_devices only supported in Spark 3.0 and above"


def test_failure_without_message_attribute_gives_its_first_line(junit_samples: Path) -> None:
    by_test = {r.test: r for r in read(junit_samples, "jest-junit-failures-windows-paths.xml")}
    assert by_test[f"Test 1 {NEST} Test 1.1::Failing test"].message == (
        "Error: expect(received).toBeTruthy()"
    )
    assert all(r.file is None for r in by_test.values())  # no file attribute anywhere
    catch2 = read(junit_samples, "catch2-failure-file-line.xml")
    assert catch2[0].message == "REQUIRE(v == 1) expands to 0 == 10"
    php = {r.test: r for r in read(junit_samples, "phpunit-nested-suites-assertions.xml")}
    other = php["/workspace/phpcheckstyle/test/OtherTest.php::OtherTest::testOther"]
    assert other.message == "OtherTest::testOther"
    assert other.file == "/workspace/phpcheckstyle/test/OtherTest.php"


def test_bom_and_crlf_in_messages(junit_samples: Path) -> None:
    by_test = {r.test: r for r in read(junit_samples, "dotnet-junitxml-testlogger-bom.xml")}
    failed = by_test['JUnit.Xml.TestLogger.NetFull.Tests.ParametrizedTestCases::TestData(2,"A")']
    assert failed.message == "failing for second case\n  Expected: not equal to 2\n  But was:  2"
    assert failed.duration == 0.0205739
    assert by_test["JUnit.Xml.TestLogger.NetFull.Tests.FailingOneTimeSetUp::TestA"].duration == (
        1e-07
    )


def test_suite_file_is_the_result_file_but_not_in_the_id(junit_samples: Path) -> None:
    (result,) = read(junit_samples, "mocha-junit-reporter-root-suite.xml")
    assert result.file == "/path/test/config.js"
    assert "config.js" not in result.test
    assert result.duration == 0.002


def test_rspec_file_loses_its_leading_dot(junit_samples: Path) -> None:
    results = read(junit_samples, "rspec-junit-formatter.xml")
    assert results[0].file == "spec/models/article_spec.rb"


def test_sample_times(junit_samples: Path) -> None:
    cunit = read(junit_samples, "cunit-failure-id-attrs.xml")
    assert [r.duration for r in cunit] == [1.7e-05, 0.000174, 8.7e-05, 3.6e-05]
    rest = read(junit_samples, "edge-time-with-thousands-comma.xml")
    assert [r.duration for r in rest] == [10, 11, 10, 12, 12, 13, 13, 20]


def test_status_disabled_without_child_is_skipped(junit_samples: Path) -> None:
    by_test = {r.test: r for r in read(junit_samples, "tst-cpp-status-disabled-errored.xml")}
    assert by_test["factorial::disabled_test"].outcome is SKIPPED
    assert by_test["factorial::test_which_throws_unknown_exception"].message == (
        "uncaught (anonymous namespace)::some_unknown_exception"
    )


# --- refused reports ------------------------------------------------------------

BILLION_LAUGHS = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<testsuites><testsuite name="s"><testcase name="&lol9;"/></testsuite></testsuites>
"""

EXTERNAL_ENTITY = b"""<?xml version="1.0"?>
<!DOCTYPE testsuites [<!ENTITY x SYSTEM "file:///etc/passwd">]>
<testsuites><testsuite name="s"><testcase name="t">
<failure message="&x;"/></testcase></testsuite></testsuites>
"""

DTD_INTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE testsuites [<!ELEMENT testsuites ANY>]>
<testsuites><testsuite name="s"><testcase name="t"/></testsuite></testsuites>
"""

DTD_EXTERNAL = b"""<?xml version="1.0"?>
<!DOCTYPE testsuites SYSTEM "http://example.invalid/junit.dtd">
<testsuites><testsuite name="s"><testcase name="t"/></testsuite></testsuites>
"""

HTML_PAGE = b"""<!DOCTYPE html>
<html lang="en"><head><title>502 Bad Gateway</title></head>
<body><h1>502 Bad Gateway</h1><hr><center>nginx</center></body></html>
"""

XHTML_PAGE = b"""<?xml version="1.0" encoding="utf-8"?>
<html xmlns="http://www.w3.org/1999/xhtml"><body><p>Sign in</p></body></html>
"""


@pytest.mark.parametrize(
    ("data", "message"),
    [
        pytest.param(BILLION_LAUGHS, "XML entities are not accepted", id="billion-laughs"),
        pytest.param(EXTERNAL_ENTITY, "XML entities are not accepted", id="external-entity"),
        pytest.param(DTD_INTERNAL, r"document type declarations \(<!DOCTYPE>\)", id="dtd"),
        pytest.param(DTD_EXTERNAL, r"document type declarations \(<!DOCTYPE>\)", id="dtd-url"),
        pytest.param(b"", "report is empty", id="empty"),
        pytest.param(b" \r\n\t ", "report is empty", id="blank"),
        pytest.param(b"\xef\xbb\xbf\n", "report is empty", id="bom-only"),
        pytest.param(b"\x00\x01\x02\xff garbage", "not well-formed XML", id="binary"),
        pytest.param(b"PASSED 12 tests", "not well-formed XML", id="text"),
        pytest.param(b"<testsuites><testsuite name='s'>", "not well-formed XML", id="truncated"),
        pytest.param(b"<testsuites>&nope;</testsuites>", "not well-formed XML", id="undefined"),
        pytest.param(b"<testsuites/><testsuites/>", "not well-formed XML", id="two-roots"),
        pytest.param(HTML_PAGE, "HTML page", id="html"),
        pytest.param(XHTML_PAGE, "root element is <html>", id="xhtml"),
        pytest.param(b'{"results": [{"test": "t", "outcome": "passed"}]}', "is JSON", id="json"),
        pytest.param(b"[]", "is JSON", id="json-list"),
        pytest.param(b"<project><target/></project>", "root element is <project>", id="ant"),
        pytest.param(
            b"<testsuite><testcase classname='c'/></testsuite>", "has no name", id="nameless"
        ),
        pytest.param(b"\x1f\x8bnot really gzip", "gzip", id="bad-gzip"),
        pytest.param(gzip.compress(b"<testsuites/>" * 100)[:-30], "truncated", id="truncated-gzip"),
        pytest.param(gzip.compress(b"<html><body/></html>"), "HTML page", id="gzipped-html"),
    ],
)
def test_unreadable_reports_say_why(data: bytes, message: str) -> None:
    with pytest.raises(MalformedPayload, match=message):
        parse_junit(data)


def test_report_over_the_limit_is_too_large() -> None:
    data = b"<testsuites>" + b"<testcase name='t'/>" * 100 + b"</testsuites>"
    assert len(parse_junit(data, max_bytes=len(data))) == 100
    with pytest.raises(BodyTooLarge, match=f"larger than {len(data) - 1} bytes") as error:
        parse_junit(data, max_bytes=len(data) - 1)
    assert error.value.status_code == 413


def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    # 200 MB of zeros compress to about 200 kB; built without holding 200 MB.
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    megabyte = bytes(1024 * 1024)
    bomb = b"".join(compressor.compress(megabyte) for _ in range(200)) + compressor.flush()
    assert len(bomb) < 1024 * 1024
    tracemalloc.start()
    try:
        with pytest.raises(BodyTooLarge, match="inflates to more than"):
            parse_junit(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 80 * 1024 * 1024  # the 25 MB cap and a step, never 200 MB


def test_gzip_inflating_past_a_small_cap_is_too_large() -> None:
    report = b"<testsuites>" + b"<testcase name='t'/>" * 1000 + b"</testsuites>"
    with pytest.raises(BodyTooLarge):
        parse_junit(gzip.compress(report), max_bytes=len(report) - 1)
    assert len(parse_junit(gzip.compress(report), max_bytes=len(report))) == 1000


def test_concatenated_gzip_members_are_one_report() -> None:
    report = b"<testsuite name='s'><testcase name='a'/><testcase name='b'/></testsuite>"
    data = gzip.compress(report[:30]) + gzip.compress(report[30:])
    assert [r.test for r in parse_junit(data)] == ["s::a", "s::b"]


def test_no_exception_but_ingest_errors_escape_whatever_the_bytes() -> None:
    sample = (
        b'<?xml version="1.0" encoding="UTF-8"?>\n<testsuites><testsuite name="s" file="x.js">'
        b'<testcase classname="a.B" name="t[1]" time="1,2"><flakyFailure message="m">'
        b"<stackTrace>s</stackTrace></flakyFailure><failure>f</failure></testcase>"
        b"</testsuite></testsuites>"
    )
    rng = random.Random(20261129)  # noqa: S311 (a fuzz that must replay the same, no secret)
    variants = [sample[:cut] for cut in range(len(sample))]
    variants += [gzip.compress(sample)[:cut] for cut in range(0, 120, 7)]
    for _ in range(400):
        mutated = bytearray(sample)
        for _ in range(rng.randint(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        variants.append(bytes(mutated))
    for data in variants:
        with contextlib.suppress(IngestError):
            parse_junit(data)


def test_an_unforeseen_error_is_still_a_malformed_report(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(reader: object) -> list[CaseResult]:
        raise KeyError("a parser bug")

    monkeypatch.setattr("scheduler.ingest.junit._results", broken)
    with pytest.raises(MalformedPayload, match=r"could not be read as JUnit XML \(KeyError\)"):
        parse_junit(b"<testsuites/>")
    assert "unexpected error reading a JUnit report" in caplog.text


# --- ids ------------------------------------------------------------------------


def test_attribute_order_quotes_and_whitespace_do_not_change_ids() -> None:
    plain = b"""<testsuites><testsuite name="pytest">
<testcase classname="tests.unit.test_x.TestY" file="tests/unit/test_x.py" name="test_z[p]"
  time="1.5"/>
<testcase classname="io.Example" name="renders the button"/>
</testsuite></testsuites>"""
    shuffled = b"""<?xml version='1.0' encoding='UTF-8'?>\r\n<testsuites>\r\n
  <testsuite name='pytest'>
    <testcase
        time='1.5'   name='  test_z[p] '
        file=' ./tests\\unit\\test_x.py '
        classname='
           tests.unit.test_x.TestY  '>
    </testcase>
    <testcase name="renders   the
       button" classname=" io.Example "/>
  </testsuite>
</testsuites>"""
    expected = ["tests/unit/test_x.py::TestY::test_z[p]", "io.Example::renders the button"]
    assert [r.test for r in parse_junit(plain)] == expected
    assert [r.test for r in parse_junit(shuffled)] == expected
    assert parse_junit(b"\xef\xbb\xbf" + shuffled) == parse_junit(plain)


def test_windows_file_attribute_becomes_forward_slashes() -> None:
    data = b"""<testsuites><testsuite name="__tests__\\main.test.js"
        file="C:\\ci\\repo\\__tests__\\main.test.js">
      <testcase classname="Button" name="renders" file="__tests__\\main.test.js"/>
      <testcase classname="Button" name="clicks"/>
    </testsuite></testsuites>"""
    first, second = parse_junit(data)
    assert (first.test, first.file) == (
        "__tests__/main.test.js::Button::renders",
        "__tests__/main.test.js",
    )
    assert (second.test, second.file) == ("Button::clicks", "C:/ci/repo/__tests__/main.test.js")


def test_suite_file_is_in_the_id_only_when_nothing_else_locates_the_test() -> None:
    data = b"""<testsuites>
      <testsuite name="Button" file="src/button.test.js">
        <testcase name="renders"/>
        <testcase classname="Button" name="renders"/>
      </testsuite>
    </testsuites>"""
    without_class, with_class = parse_junit(data)
    assert without_class.test == "src/button.test.js::renders"
    assert with_class.test == "Button::renders"
    assert without_class.file == with_class.file == "src/button.test.js"


def test_testcase_without_classname_or_file_takes_its_suite_name() -> None:
    data = b"""<testsuites>
      <testsuite name="example.com/a"><testcase classname="" name="TestMain"/></testsuite>
      <testsuite name="example.com/b"><testcase name="TestMain"/></testsuite>
      <testsuite name="outer"><testsuite><testcase name="inner"/></testsuite></testsuite>
      <testsuite name="tests\\unit\\b.spec.ts"><testcase name="works"/></testsuite>
      <testsuite><testcase name="alone"/></testsuite>
    </testsuites>"""
    assert [(r.test, r.file) for r in parse_junit(data)] == [
        ("example.com/a::TestMain", None),
        ("example.com/b::TestMain", None),
        ("outer::inner", None),
        ("tests/unit/b.spec.ts::works", None),
        ("alone", None),
    ]


def test_one_file_named_by_any_suite_is_every_result_file() -> None:
    # Cypress (mocha-junit-reporter) names the spec on the empty root suite only.
    data = b"""<testsuites name="Mocha Tests">
      <testsuite name="Root Suite" tests="0" file="cypress/e2e/login.cy.js"/>
      <testsuite name="Login"><testcase name="Login signs in" classname="signs in"/></testsuite>
    </testsuites>"""
    (result,) = parse_junit(data)
    assert (result.test, result.file) == ("signs in::Login signs in", "cypress/e2e/login.cy.js")


def test_two_suite_files_name_no_file_for_a_suite_without_one() -> None:
    data = b"""<testsuites>
      <testsuite name="A" file="a.js"><testcase classname="A" name="a"/></testsuite>
      <testsuite name="B" file="b.js"><testcase classname="B" name="b"/></testsuite>
      <testsuite name="C"><testcase classname="C" name="c"/></testsuite>
    </testsuites>"""
    assert [r.file for r in parse_junit(data)] == ["a.js", "b.js", None]


def test_bare_testcase_root_and_namespaces() -> None:
    assert parse_junit(b'<testcase classname="a.B" name="t" time="2"/>') == [
        CaseResult(test="a.B::t", outcome=PASSED, duration=2.0)
    ]
    namespaced = b"""<j:testsuites xmlns:j="urn:example:junit"><j:testsuite name="s">
      <j:testcase classname="a.B" name="t"><j:failure message="m"/></j:testcase>
    </j:testsuite></j:testsuites>"""
    assert parse_junit(namespaced) == [CaseResult(test="a.B::t", outcome=FAILED, message="m")]


def test_empty_report_has_no_results() -> None:
    assert parse_junit(b"<testsuites/>") == []
    assert parse_junit(b'<testsuite name="s" tests="0"><properties/></testsuite>') == []


def test_utf16_report_is_read() -> None:
    text = (
        '<?xml version="1.0" encoding="UTF-16"?>'
        '<testsuite name="s"><testcase name="\u00e9t\u00e9"/></testsuite>'
    )
    assert [r.test for r in parse_junit(text.encode("utf-16"))] == ["s::\u00e9t\u00e9"]


def test_comments_and_processing_instructions_are_ignored() -> None:
    data = b"""<?xml version="1.0"?><!-- generated --><?xml-stylesheet href="x.xsl"?>
    <testsuites><!-- a --><testsuite name="s"><testcase classname="c" name="t">
    <!-- b --><failure><!-- c -->boom</failure></testcase></testsuite></testsuites>"""
    assert parse_junit(data) == [CaseResult(test="c::t", outcome=FAILED, message="boom")]


# --- outcomes, messages, attempts -------------------------------------------------


def outcome_of(children: str, attributes: str = "") -> Outcome:
    data = f'<testsuite name="s"><testcase name="t" {attributes}>{children}</testcase></testsuite>'
    (result,) = parse_junit(data.encode())
    return result.outcome


@pytest.mark.parametrize(
    ("children", "expected"),
    [
        ("", PASSED),
        ("<system-out>ok</system-out><properties/>", PASSED),
        ("<skipped/>", SKIPPED),
        ("<failure/>", FAILED),
        ("<error/>", ERROR),
        ("<skipped/><failure/>", FAILED),
        ("<failure/><skipped/>", FAILED),
        ("<error/><failure/><skipped/>", ERROR),
        ("<skipped/><failure/><error/>", ERROR),
        ("<Failure/>", FAILED),  # a tag in another case means the same
    ],
)
def test_worst_result_child_decides(children: str, expected: Outcome) -> None:
    assert outcome_of(children) is expected


@pytest.mark.parametrize(
    ("attributes", "children", "expected"),
    [
        ('status="run" result="completed"', "", PASSED),
        ('status="notrun" result="suppressed"', "", SKIPPED),  # googletest DISABLED_
        ('status="run" result="skipped"', "", SKIPPED),  # googletest GTEST_SKIP
        ("status='disabled'", "", SKIPPED),  # tst
        ('status="passed"', "", PASSED),
        ('status="fail"', "", FAILED),  # CTest, should it not write <failure>
        ('status="errored"', "", ERROR),
        ('status="NotRun"', "", SKIPPED),
        ('status="failed"', "<skipped/>", SKIPPED),  # a child says more than a status
        ('status="run"', "<failure/>", FAILED),
        ('status="something new"', "", PASSED),
    ],
)
def test_status_attribute_counts_only_without_a_result_child(
    attributes: str, children: str, expected: Outcome
) -> None:
    assert outcome_of(children, attributes) is expected


def message_of(children: str) -> str | None:
    data = f'<testsuite name="s"><testcase name="t">{children}</testcase></testsuite>'
    (result,) = parse_junit(data.encode())
    return result.message


def test_message_attribute_else_first_line_of_text() -> None:
    assert message_of('<failure message="  boom  ">trace</failure>') == "boom"
    assert message_of('<failure message="">\n\n  first line  \nsecond</failure>') == "first line"
    assert message_of("<failure><![CDATA[\nfrom CDATA\nmore]]></failure>") == "from CDATA"
    assert message_of("<failure/>") is None
    assert message_of('<skipped message="not on Windows"/>') == "not on Windows"
    assert message_of('<failure message="a&#13;&#10;b"/>') == "a\nb"
    # The worst result's message, not the first one's.
    assert message_of('<failure message="f"/><error message="e"/>') == "e"


def test_long_messages_are_cut() -> None:
    assert message_of(f'<failure message="{"x" * 5000}"/>') == "x" * MESSAGE_LIMIT
    assert message_of(f"<failure>{'y' * 50_000}\nrest</failure>") == "y" * MESSAGE_LIMIT


def test_huge_failure_text_is_not_kept() -> None:
    log = "first line\n" + "log line\n" * 500_000
    results = parse_junit(f'<testcase name="t"><failure>{log}</failure></testcase>'.encode())
    assert results[0].message == "first line"


def run_attempts(testcases: str) -> list[tuple[str, int, Outcome, str | None]]:
    data = f'<testsuite name="s">{testcases}</testsuite>'
    return [(r.test, r.attempt, r.outcome, r.message) for r in parse_junit(data.encode())]


def test_flaky_failures_and_errors_come_before_the_final_result() -> None:
    assert run_attempts(
        '<testcase classname="c" name="t" time="3">'
        '<flakyFailure message="one" time="1"/><flakyError message="two"/>'
        "</testcase>"
    ) == [
        ("c::t", 1, FAILED, "one"),
        ("c::t", 2, ERROR, "two"),
        ("c::t", 3, PASSED, None),
    ]


def test_flaky_failures_before_a_final_failure() -> None:
    assert run_attempts(
        '<testcase classname="c" name="t"><flakyFailure message="one"/>'
        '<flakyFailure message="two"/><failure message="three"/></testcase>'
    ) == [("c::t", 1, FAILED, "one"), ("c::t", 2, FAILED, "two"), ("c::t", 3, FAILED, "three")]


def test_rerun_failures_and_errors_come_after_the_first_failure() -> None:
    assert run_attempts(
        '<testcase classname="c" name="t"><error message="first"/>'
        '<rerunFailure message="second"/><rerunError message="third">'
        "<stackTrace>at c.t</stackTrace></rerunError></testcase>"
    ) == [("c::t", 1, ERROR, "first"), ("c::t", 2, FAILED, "second"), ("c::t", 3, ERROR, "third")]


def test_rerun_children_of_pytest_rerunfailures_are_earlier_attempts() -> None:
    assert run_attempts(
        '<testcase classname="tests.test_x" file="tests/test_x.py" name="test_flaky">'
        '<rerun message="AssertionError: 1"/><rerun message="AssertionError: 2"/></testcase>'
    ) == [
        ("tests/test_x.py::test_flaky", 1, FAILED, "AssertionError: 1"),
        ("tests/test_x.py::test_flaky", 2, FAILED, "AssertionError: 2"),
        ("tests/test_x.py::test_flaky", 3, PASSED, None),
    ]


def test_repeated_testcases_continue_the_attempts_of_their_test() -> None:
    # gotestsum --rerun-fails, or one testcase per try.
    assert run_attempts(
        '<testcase classname="p" name="TestA"><failure message="1"/></testcase>'
        '<testcase classname="p" name="TestB"/>'
        '<testcase classname=" p " name="TestA"><flakyFailure message="2"/>'
        '<failure message="3"/></testcase>'
        '<testcase classname="p" name="TestA"/>'
    ) == [
        ("p::TestA", 1, FAILED, "1"),
        ("p::TestB", 1, PASSED, None),
        ("p::TestA", 2, FAILED, "2"),
        ("p::TestA", 3, FAILED, "3"),
        ("p::TestA", 4, PASSED, None),
    ]


def test_results_count_by_the_final_attempt() -> None:
    results = parse_junit(
        b'<testsuite name="s"><testcase name="a"><flakyFailure/></testcase>'
        b'<testcase name="b"><failure/><rerunFailure/></testcase></testsuite>'
    )
    assert count_results(results) == counts(2, 1, 1, 0, 0, 2)


# --- durations ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("   ", None),
        ("0", 0.0),
        ("0.000", 0.0),
        (" 3.25 ", 3.25),
        ("1.7e-05", 1.7e-05),
        ("1,234.5", 1234.5),
        ("2,503.1", 2503.1),
        ("1,234,567", 1234567.0),
        ("0,5", 0.5),  # a decimal comma
        ("1,2,3", None),
        ("12s", 12.0),
        ("1.5 s", 1.5),
        ("250ms", 0.25),
        ("NaN", None),
        ("nan", None),
        ("inf", None),
        ("-Infinity", None),
        ("-1", None),
        ("-0.5", None),
        ("abc", None),
        ("1.2.3", None),
    ],
)
def test_parse_seconds(value: str | None, expected: float | None) -> None:
    assert parse_seconds(value) == expected


def test_durations_from_reports() -> None:
    data = b"""<testsuite name="s" time="oops">
      <testcase name="a" time="1,234.5"/>
      <testcase name="b"/>
      <testcase name="c" time=""/>
      <testcase name="d" time="NaN"/>
      <testcase name="e" time="-3"/>
      <testcase name="f" time="0.5s"/>
    </testsuite>"""
    assert [r.duration for r in parse_junit(data)] == [1234.5, None, None, None, None, 0.5]


# --- size -----------------------------------------------------------------------
# (how fast: benchmarks/junit_parse.py)


def synthetic_report(n: int) -> bytes:
    cases = "".join(
        f'<testcase classname="tests.unit.test_m{i % 500}.TestC" '
        f'file="tests/unit/test_m{i % 500}.py" name="test_{i}[p]" time="0.{i % 1000}">'
        + ('<failure message="boom">trace\nmore</failure>' if i % 10 == 0 else "")
        + "</testcase>"
        for i in range(n)
    )
    return f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'.encode()


def test_fifty_thousand_testcases() -> None:
    results = parse_junit(synthetic_report(50_000))
    assert len(results) == 50_000
    assert results[10].test == "tests/unit/test_m10.py::TestC::test_10[p]"
    assert results[10].outcome is FAILED
