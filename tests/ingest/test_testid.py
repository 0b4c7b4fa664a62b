"""The canonical test id: every rule of scheduler.ingest.testid's docstring."""

import pytest

from scheduler.ingest.testid import (
    canonical_test_id,
    normalise_job,
    normalise_path,
    split_job,
    with_job,
)

# What jest-junit and Playwright put between describe blocks (SINGLE RIGHT-POINTING
# ANGLE QUOTATION MARK), written as an escape so that no reader mistakes it for ">".
NEST = "\u203a"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("tests/unit/test_x.py", "tests/unit/test_x.py"),
        ("tests\\unit\\test_x.py", "tests/unit/test_x.py"),
        ("C:\\Users\\ci\\repo\\__tests__\\main.test.js", "C:/Users/ci/repo/__tests__/main.test.js"),
        ("./tests/test_x.py", "tests/test_x.py"),
        ("././tests/test_x.py", "tests/test_x.py"),
        (".//tests/test_x.py", "tests/test_x.py"),
        (".\\tests\\test_x.py", "tests/test_x.py"),
        ("tests//unit///test_x.py", "tests/unit/test_x.py"),
        ("  tests/test_x.py \n", "tests/test_x.py"),
        ("/workspace/test/CommentsTest.php", "/workspace/test/CommentsTest.php"),
        ("../outside/test_x.py", "../outside/test_x.py"),
        ("tests/./test_x.py", "tests/./test_x.py"),  # only a leading ./ goes
    ],
)
def test_normalise_path(path: str, expected: str) -> None:
    assert normalise_path(path) == expected
    assert normalise_path(expected) == expected


# --- rule 3: with a file ----------------------------------------------------------


def test_pytest_class_becomes_pytest_node_id() -> None:
    test = canonical_test_id(
        name="test_z[p]", classname="tests.unit.test_x.TestY", file="tests/unit/test_x.py"
    )
    assert test == "tests/unit/test_x.py::TestY::test_z[p]"


def test_pytest_module_level_test_has_no_class_part() -> None:
    test = canonical_test_id(
        name="test_z", classname="tests.unit.test_x", file="tests/unit/test_x.py"
    )
    assert test == "tests/unit/test_x.py::test_z"


def test_pytest_nested_classes_become_one_part_each() -> None:
    test = canonical_test_id(
        name="test_z", classname="tests.unit.test_x.A.B", file="tests/unit/test_x.py"
    )
    assert test == "tests/unit/test_x.py::A::B::test_z"


def test_parameters_stay_in_the_name_even_with_dots_and_colons() -> None:
    test = canonical_test_id(
        name="test_z[1.5-a::b]", classname="tests.test_x", file="tests/test_x.py"
    )
    assert test == "tests/test_x.py::test_z[1.5-a::b]"


def test_module_path_must_match_whole_parts() -> None:
    # tests.unit.test_xy is not inside tests.unit.test_x.
    test = canonical_test_id(
        name="test_z", classname="tests.unit.test_xy.T", file="tests/unit/test_x.py"
    )
    assert test == "tests/unit/test_x.py::tests.unit.test_xy.T::test_z"


def test_pytest_on_windows_gives_the_same_id() -> None:
    linux = canonical_test_id(
        name="test_z", classname="tests.unit.test_x.TestY", file="tests/unit/test_x.py"
    )
    windows = canonical_test_id(
        name="test_z", classname="tests.unit.test_x.TestY", file=".\\tests\\unit\\test_x.py"
    )
    assert windows == linux


def test_java_classname_with_a_file_is_kept_whole() -> None:
    test = canonical_test_id(
        name="testAdd",
        classname="com.example.CalcTest",
        file="src/test/java/com/example/CalcTest.java",
    )
    assert test == "src/test/java/com/example/CalcTest.java::com.example.CalcTest::testAdd"


def test_non_python_file_keeps_its_classname_even_when_it_matches_the_path() -> None:
    # rspec_junit_formatter: classname is the spec path with dots.
    test = canonical_test_id(
        name="Article validation is invalid without a title",
        classname="spec.models.article_spec",
        file="./spec/models/article_spec.rb",
    )
    assert test == (
        "spec/models/article_spec.rb::spec.models.article_spec::"
        "Article validation is invalid without a title"
    )


def test_classname_that_repeats_the_file_adds_nothing() -> None:
    expected = "tests/example.spec.ts::has title"
    assert (
        canonical_test_id(
            name="has title", classname="tests/example.spec.ts", file="tests/example.spec.ts"
        )
        == expected
    )
    assert (
        canonical_test_id(
            name="has title", classname="tests\\example.spec.ts", file="./tests/example.spec.ts"
        )
        == expected
    )


@pytest.mark.parametrize("classname", [None, "", "   "])
def test_file_without_classname(classname: str | None) -> None:
    test = canonical_test_id(name="test 2", classname=classname, file="test/test-2.py")
    assert test == "test/test-2.py::test 2"


# --- rules 4 and 5: without a file ------------------------------------------------


@pytest.mark.parametrize("file", [None, "", "  "])
def test_classname_and_name(file: str | None) -> None:
    assert canonical_test_id(name="testApp", classname="io.olamy.FlakyTest", file=file) == (
        "io.olamy.FlakyTest::testApp"
    )


def test_pytest_xunit2_has_no_file_and_keeps_the_dotted_classname() -> None:
    assert canonical_test_id(name="test_always_pass", classname="tests.test_lib") == (
        "tests.test_lib::test_always_pass"
    )


@pytest.mark.parametrize("classname", [None, "", " \t"])
def test_name_alone(classname: str | None) -> None:
    assert canonical_test_id(name="disabled_test", classname=classname) == "disabled_test"


def test_an_id_given_whole_comes_back_unchanged() -> None:
    # The JSON results send ids made by this function (or by pytest) as names.
    for test in (
        "tests/unit/test_x.py::TestY::test_z[p]",
        "io.olamy.FlakyTest::testApp",
        f"Test 1 {NEST} Test 1.1::Failing test",
        "disabled_test",
    ):
        assert canonical_test_id(name=test) == test


# --- rule 1: whitespace --------------------------------------------------------


def test_whitespace_around_values_is_not_part_of_the_id() -> None:
    assert (
        canonical_test_id(
            name="  test_z[p]\n",
            classname="\ttests.unit.test_x.TestY ",
            file=" tests/unit/test_x.py ",
        )
        == "tests/unit/test_x.py::TestY::test_z[p]"
    )


def test_runs_of_whitespace_inside_values_count_as_one_space() -> None:
    expected = f"Test 1 {NEST} Test 1.1::renders the button"
    classname = f"Test 1 {NEST} Test 1.1"
    assert canonical_test_id(name="renders the button", classname=classname) == expected
    spread = f"Test  1\n{NEST}   Test 1.1"
    assert canonical_test_id(name="renders \n  the\tbutton", classname=spread) == expected


def test_spaces_inside_a_name_are_kept() -> None:
    assert canonical_test_id(name="renders the button") == "renders the button"
    assert canonical_test_id(name="renders the button") != canonical_test_id(
        name="rendersthebutton"
    )


def test_whitespace_inside_a_file_is_collapsed_not_dropped() -> None:
    assert canonical_test_id(name="t", file="My Tests/test  a.py") == "My Tests/test a.py::t"


@pytest.mark.parametrize("name", ["", "   ", "\n\t"])
def test_a_test_needs_a_name(name: str) -> None:
    with pytest.raises(ValueError, match="name"):
        canonical_test_id(name=name, classname="com.example.Test")


def test_arguments_are_keyword_only() -> None:
    with pytest.raises(TypeError):
        canonical_test_id("test_z", "tests.test_x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("job", "expected"),
    [
        ("linux", "tests/test_x.py::test_y  [job: linux]"),
        (" test (ubuntu,\n  3.11) ", "tests/test_x.py::test_y  [job: test (ubuntu, 3.11)]"),
        ("matrix [a, b]", "tests/test_x.py::test_y  [job: matrix [a, b]]"),
        (None, "tests/test_x.py::test_y"),
        ("  ", "tests/test_x.py::test_y"),
    ],
)
def test_a_tests_id_in_a_job_reads_back_exactly(job: str | None, expected: str) -> None:
    test = "tests/test_x.py::test_y"
    assert with_job(test, job) == expected
    assert split_job(expected) == (test, normalise_job(job))


def test_no_id_is_taken_for_one_in_a_job() -> None:
    """Two spaces never occur in an id (whitespace collapses), so a name
    that looks like a job is its own test."""
    lookalike = canonical_test_id(name="test_y  [job: linux]")
    assert lookalike == "test_y [job: linux]"
    assert split_job(lookalike) == (lookalike, None)
    assert split_job("test_y  [job: linux") == ("test_y  [job: linux", None)
