"""The feature matrix, by hand-computed examples: five tests (recently
failing, never failed, new, a Java class without a file, an id that names no
file) and a commit of three paths whose hunks name three symbols."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scheduler.risk import paths as path_index
from scheduler.risk.columns import ChangeColumns, FeatureInputError, HistoryColumns, LinkColumns
from scheduler.risk.features import (
    COFAIL_ALPHA,
    COFAIL_BETA,
    FEATURE_NAMES,
    FeatureMatrix,
    build_features,
)
from scheduler.risk.paths import PathIndex

AT = datetime(2024, 6, 1, 12, tzinfo=UTC)
NAN = math.nan

NAMES = [
    # 0: recently failing, pytest node id (its file only in the id)
    "tests/unit/test_io.py::TestReader::test_eof",
    # 1: never failed, Java with a file
    "core/src/test/java/org/x/FooTest.java::org.x.FooTest::testBar",
    # 2: new to riskrank, no statistics
    "tests/integration/test_new.py::test_fresh",
    # 3: a Java class reported without a file, failed once in one build
    "org.x.BarTest::testBaz",
    # 4: a name alone: no file, no class
    "smoke check",
]
FILES = [
    None,
    "core/src/test/java/org/x/FooTest.java",
    "tests/integration/test_new.py",
    None,
    None,
]
PATHS = [
    "tests/unit/test_io.py",  # test 0's own file
    "api/src/test/java/org/x/BarTest.java",  # test 3's own file
    "core/src/main/java/org/x/Foo.java",  # what test 1 is named after
]
# What the hunks of the change name (in no order, one twice).
SYMBOLS = ["smoke_check_all", "Reader.close", "bar", "bar"]
# (test, path, changed together, failed together)
LINKS = [(0, 0, 10, 4), (0, 2, 3, 0), (1, 2, 5, 0), (1, 1, 2, 0), (1, 0, 1, 0), (3, 1, 1, 1)]

# Newest first: F E P P P P F, then thirteen P, then P P F P P (25 builds).
RECENT_0 = "FEPPPPF" + "P" * 13 + "PPFPP"


def history() -> HistoryColumns:
    return HistoryColumns.from_sequences(
        names=NAMES,
        files=FILES,
        runs=[25, 4, None, 1, 3],
        failures=[4, 0, None, 1, 1],
        recent=[RECENT_0, "PPPP", None, "E", "PFP"],
        builds_since_failure=[0, None, None, 0, 1],
        flips=[6, 0, None, 0, 2],
        flaky_runs=[1, 0, None, 0, 0],
        duration_mean=[0.5, 2.0, None, None, 1.0],
        first_seen=[
            AT - timedelta(days=10),
            AT - timedelta(days=1, hours=12),
            None,
            AT + timedelta(hours=1),  # after `at`: counts as 0 days
            (AT - timedelta(days=2)).timestamp(),  # epoch seconds do too
        ],
    )


def links() -> LinkColumns:
    test, path, ran, failed = zip(*LINKS, strict=True)
    return LinkColumns.from_sequences(
        test_index=test, path_index=path, changed_together=ran, failed_together=failed
    )


def strength(failed: int, ran: int) -> float:
    return (failed + COFAIL_ALPHA) / (ran + COFAIL_BETA)


PRIOR = COFAIL_ALPHA / COFAIL_BETA

EXPECTED: dict[str, list[float]] = {
    # Newest 5: F E P P P. Test 4: P F P.
    "fail_rate_5": [2 / 5, 0, NAN, 1, 1 / 3],
    # Newest 20: three of F or E.
    "fail_rate_20": [3 / 20, 0, NAN, 1, 1 / 3],
    "fail_rate_all": [4 / 25, 0, NAN, 1, 1 / 3],
    "last_failed": [1, 0, NAN, 1, 0],
    "builds_since_failure": [0, NAN, NAN, 0, 1],
    "flip_rate": [6 / 24, 0 / 3, NAN, NAN, 2 / 2],
    "flaky_rate": [1 / 25, 0, NAN, 0, 0],
    "log_runs": [math.log(26), math.log(5), 0, math.log(2), math.log(4)],
    "age_days": [10, 1.5, NAN, 0, 2],
    "duration_mean": [0.5, 2.0, NAN, NAN, 1.0],
    "is_new": [0, 0, 1, 0, 0],
    # New first; then builds since the last failure; then the failure rate
    # (4 and 1 both failed in their last build: 4's rate of 1 before 1's 0.16).
    "new_or_recent": [0.5 / (1.5 - 0.08), 0.0, 1.0, 0.5, 0.5 / (2.5 - 1 / 6)],
    "changed_files": [3] * 5,
    "changed_lines": [42] * 5,
    # py, java, java
    "changed_extensions": [2] * 5,
    # tests, api, core
    "changed_top_dirs": [3] * 5,
    "same_extension_share": [1 / 3, 2 / 3, 1 / 3, NAN, NAN],
    "same_top_dir_share": [1 / 3, 1 / 3, 1 / 3, NAN, NAN],
    # 0: its file from the id; 3: org.x.BarTest in api/src/test/java/org/x.
    "own_file_changed": [1, 0, 0, 1, NAN],
    # 1: FooTest is named after Foo.java; 3 after Bar, which did not change.
    "subject_changed": [0, 1, 0, 0, NAN],
    # 0 and 3 have a path without a link (the prior); 1 has a link to every
    # path, all below the prior; 2 and 4 have none.
    "cofail_max": [strength(4, 10), strength(0, 1), PRIOR, strength(1, 1), PRIOR],
    "cofail_sum": [4, 0, 0, 1, 0],
    "cochange_max": [10, 5, 0, 1, 0],
    # 1: core/src/test/java/org/x up four to core/src, down four to
    # core/src/main/java/org/x (or up six and down two to tests/unit).
    # 2: tests/integration up one, down one to tests/unit.
    "path_distance": [0, 8, 2, NAN, NAN],
    # Tokens of the paths:
    #   {tests, unit, test, io, py}
    #   {api, src, test, java, org, x, bar}
    #   {core, src, main, java, org, x, foo}
    # 0: {tests, unit, test, io, py, reader, eof} and path 0: 5 / 7.
    # 1: {core, src, test, java, org, x, foo, bar} and path 1 or 2: 6 / 9.
    # 2: {tests, integration, test, new, py, fresh} and path 0: 3 / 8.
    # 3: {org, x, bar, test, baz} and path 1: 4 / 8.
    # 4: {smoke, check}: nothing shared.
    "token_jaccard": [5 / 7, 6 / 9, 3 / 8, 4 / 8, 0],
    # The stems of the symbols: {smokecheckall}, {reader, close}, {bar}; of
    # the tests' parts after their files: 0 {reader, eof} (TestReader,
    # test_eof), 1 {foo, bar} (org.x.FooTest, testBar), 2 {fresh}, 3 {bar,
    # baz} (org.x.BarTest, testBaz), 4 {smokecheck}.
    "symbol_named": [1, 1, 0, 1, 0],
    # Their tokens: {smoke, check, all}, {reader, close}, {bar}; the tests':
    # 0 {reader, eof}: 1 / 3 with Reader.close; 1 {foo, bar} and 3 {bar, baz}:
    # 1 / 2 with bar; 2 {fresh}: none; 4 {smoke, check}: 2 / 3.
    "symbol_tokens": [1 / 3, 1 / 2, 0, 1 / 2, 2 / 3],
    # Every test but 2 (never ran) still has its first build in `recent`
    # (runs = its letters), but 0 is of the first report riskrank got (the
    # earliest first_seen), not a new test: 1 and 4 passed in their first
    # build, 3 failed (E); with the prior of 10 tests failing 12% of the time.
    "new_test_rate": [(1 + 0.12 * 10) / (3 + 10)] * 5,
}


def the_change() -> ChangeColumns:
    return ChangeColumns.of(PATHS, changed_lines=42, symbols=SYMBOLS)


def build(
    change: ChangeColumns | None = None, link_columns: LinkColumns | None = None
) -> FeatureMatrix:
    return build_features(
        history(),
        change if change is not None else the_change(),
        link_columns if link_columns is not None else links(),
        at=AT,
    )


def assert_columns(matrix: FeatureMatrix, expected: dict[str, list[float]]) -> None:
    for number, name in enumerate(FEATURE_NAMES):
        if name in expected:
            np.testing.assert_allclose(
                matrix.values[:, number],
                np.asarray(expected[name], dtype=np.float32),
                rtol=1e-6,
                equal_nan=True,
                err_msg=name,
            )


def test_feature_names_are_fixed() -> None:
    # The model registry stores this order: changing it is a new model.
    assert FEATURE_NAMES == (
        "fail_rate_5",
        "fail_rate_20",
        "fail_rate_all",
        "last_failed",
        "builds_since_failure",
        "flip_rate",
        "flaky_rate",
        "log_runs",
        "age_days",
        "duration_mean",
        "is_new",
        "new_or_recent",
        "changed_files",
        "changed_lines",
        "changed_extensions",
        "changed_top_dirs",
        "same_extension_share",
        "same_top_dir_share",
        "own_file_changed",
        "subject_changed",
        "cofail_max",
        "cofail_sum",
        "cochange_max",
        "path_distance",
        "token_jaccard",
        "symbol_named",
        "symbol_tokens",
        "new_test_rate",
    )


def test_every_feature_of_the_example() -> None:
    matrix = build()
    assert set(EXPECTED) == set(FEATURE_NAMES)
    assert matrix.names == FEATURE_NAMES
    assert matrix.tests == tuple(NAMES)
    assert matrix.values.dtype == np.float32
    assert matrix.values.shape == (5, len(FEATURE_NAMES))
    assert_columns(matrix, EXPECTED)
    np.testing.assert_array_equal(
        matrix.column("token_jaccard"),
        matrix.values[:, FEATURE_NAMES.index("token_jaccard")],
    )


def test_an_empty_change() -> None:
    matrix = build(ChangeColumns.of([]), LinkColumns.empty())
    history_part = {name: EXPECTED[name] for name in FEATURE_NAMES[:11]}
    assert_columns(matrix, history_part)
    assert_columns(
        matrix,
        {
            "changed_files": [0] * 5,
            "changed_lines": [NAN] * 5,
            "changed_extensions": [0] * 5,
            "changed_top_dirs": [0] * 5,
            "same_extension_share": [NAN] * 5,
            "same_top_dir_share": [NAN] * 5,
            # Nothing changed, so no file of theirs did; test 4 names none.
            "own_file_changed": [0, 0, 0, 0, NAN],
            "subject_changed": [0, 0, 0, 0, NAN],
            "cofail_max": [NAN] * 5,
            "cofail_sum": [0] * 5,
            "cochange_max": [NAN] * 5,
            "path_distance": [NAN] * 5,
            "token_jaccard": [NAN] * 5,
            "symbol_named": [NAN] * 5,
            "symbol_tokens": [NAN] * 5,
        },
    )


def test_a_change_without_symbols() -> None:
    """Paths without hunks, or hunks that name no function: nothing is known
    of the symbols; every other feature is as it was."""
    matrix = build(ChangeColumns.of(PATHS, changed_lines=42))
    assert_columns(matrix, {**EXPECTED, "symbol_named": [NAN] * 5, "symbol_tokens": [NAN] * 5})
    assert ChangeColumns.of(PATHS, symbols=SYMBOLS).symbols == (
        "Reader.close",
        "bar",
        "smoke_check_all",
    )


def test_no_tests() -> None:
    empty = HistoryColumns.from_sequences(
        names=[],
        files=[],
        runs=[],
        failures=[],
        recent=[],
        builds_since_failure=[],
        flips=[],
        flaky_runs=[],
        duration_mean=[],
        first_seen=[],
    )
    matrix = build_features(empty, ChangeColumns.of(PATHS), LinkColumns.empty(), at=AT)
    assert matrix.values.shape == (0, len(FEATURE_NAMES))


def test_the_same_inputs_give_the_same_matrix() -> None:
    first = build()
    second = build()
    assert first.values.tobytes() == second.values.tobytes()


def test_a_kept_index_gives_the_same_matrix() -> None:
    plain = build()
    change = the_change()
    # The repository's index: more tests, another order, kept across builds.
    kept = PathIndex(
        ["other/test_z.py::test_q", *reversed(NAMES)], ["other/test_z.py", *reversed(FILES)]
    )
    for _ in range(2):
        again = build_features(history(), change, links(), at=AT, index=kept)
        assert again.values.tobytes() == plain.values.tobytes()
    # An index that lacks some of the tests is completed for the call.
    partial = PathIndex(NAMES[:2], FILES[:2])
    completed = build_features(history(), change, links(), at=AT, index=partial)
    assert completed.values.tobytes() == plain.values.tobytes()
    assert len(partial) == 2
    assert len(partial.covering(NAMES, FILES)) == 5
    assert kept.covering(NAMES, FILES) is kept


def test_a_naive_time_is_utc() -> None:
    aware = build()
    naive = build_features(
        history(),
        the_change(),
        links(),
        at=AT.replace(tzinfo=None),
    )
    assert naive.values.tobytes() == aware.values.tobytes()


def test_small_chunks_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = build()
    monkeypatch.setattr(path_index, "_CELLS_PER_CHUNK", 1)  # one path at a time
    assert build().values.tobytes() == whole.values.tobytes()


# --- properties on random repositories ---------------------------------------------


def random_case(seed: int) -> tuple[HistoryColumns, ChangeColumns, LinkColumns]:
    rng = np.random.default_rng(seed)
    words = ["core", "io", "http", "Reader", "Writer", "cache", "api", "Util"]
    names: list[str] = []
    files: list[str | None] = []
    for number in range(40):
        a, b, c = rng.choice(words, 3)
        style = number % 4
        if style == 0:
            path = f"tests/{a.lower()}/test_{b.lower()}.py"
            names.append(f"{path}::Test{c}::test_{number}")
            files.append(path if number % 8 else None)
        elif style == 1:
            path = f"{a.lower()}/src/test/java/org/{b.lower()}/{c}Test.java"
            names.append(f"{path}::org.{b.lower()}.{c}Test::test{number}")
            files.append(path)
        elif style == 2:
            names.append(f"org.{a.lower()}.{b}{c}Test::test{number}")
            files.append(None)
        else:
            names.append(f"{a} {b} works {number}")
            files.append(None)
    runs = rng.integers(0, 30, 40)
    recent = ["".join(rng.choice(list("PPPFE"), min(int(r), 64))) for r in runs]
    history = HistoryColumns.from_sequences(
        names=names,
        files=files,
        runs=runs.tolist(),
        failures=[text.count("F") + text.count("E") for text in recent],
        recent=recent,
        builds_since_failure=[None if r % 3 else int(r) // 2 for r in runs],
        flips=rng.integers(0, 5, 40).tolist(),
        flaky_runs=rng.integers(0, 2, 40).tolist(),
        duration_mean=[None if r % 5 == 0 else float(r) / 7 for r in runs],
        first_seen=[AT - timedelta(hours=int(h)) for h in rng.integers(0, 5000, 40)],
    )
    paths = [
        "tests/io/test_http.py",
        "core/src/main/java/org/cache/Reader.java",
        "api/src/test/java/org/io/UtilTest.java",
        "README.md",
        "core/pom.xml",
        "src/http.py",
    ]
    pairs = rng.choice(40 * len(paths), 60, replace=False)
    ran = rng.integers(1, 20, 60)
    link_columns = LinkColumns.from_sequences(
        test_index=pairs // len(paths),
        path_index=pairs % len(paths),
        changed_together=ran,
        failed_together=rng.integers(0, ran + 1),
    )
    # Stems of some of the tests' parts (test_reader, FooTest...) and others.
    symbols = ["reader", "Foo.bar", "http_get", "UtilTest.test_io"]
    change = ChangeColumns.of(paths, changed_lines=int(rng.integers(1, 500)), symbols=symbols)
    return history, change, link_columns


def reorder(history: HistoryColumns, order: np.ndarray) -> HistoryColumns:
    def pick(values: tuple[str | None, ...]) -> list[str | None]:
        return [values[i] for i in order]

    return HistoryColumns(
        names=tuple(history.names[i] for i in order),
        files=tuple(pick(history.files)),
        runs=history.runs[order],
        failures=history.failures[order],
        recent=tuple(history.recent[i] for i in order),
        builds_since_failure=history.builds_since_failure[order],
        flips=history.flips[order],
        flaky_runs=history.flaky_runs[order],
        duration_mean=history.duration_mean[order],
        first_seen=history.first_seen[order],
    )


@pytest.mark.parametrize("seed", range(5))
def test_permuting_the_tests_permutes_the_rows(seed: int) -> None:
    history, change, link_columns = random_case(seed)
    matrix = build_features(history, change, link_columns, at=AT)
    order = np.random.default_rng(seed + 100).permutation(len(history))
    # Row k of the permuted history is row order[k] of the original.
    new_row = np.argsort(order)
    permuted = build_features(
        reorder(history, order),
        change,
        LinkColumns(
            new_row[link_columns.test_index],
            link_columns.path_index,
            link_columns.changed_together,
            link_columns.failed_together,
        ),
        at=AT,
    )
    np.testing.assert_array_equal(permuted.values, matrix.values[order])
    assert permuted.tests == tuple(matrix.tests[i] for i in order)


@pytest.mark.parametrize("seed", range(5))
def test_an_extended_index_is_a_fresh_one(seed: int) -> None:
    history, change, link_columns = random_case(seed)
    fresh = build_features(history, change, link_columns, at=AT)
    names, files = list(history.names), list(history.files)
    half = PathIndex(names[::2], files[::2])
    sizes = half.sizes
    extended = half.covering(names, files)
    assert extended is not half
    assert half.sizes == sizes  # the kept index stays as it was
    assert extended.sizes["tests"] == len(names)
    for index in (extended, half):
        again = build_features(history, change, link_columns, at=AT, index=index)
        np.testing.assert_array_equal(again.values, fresh.values)


@pytest.mark.parametrize("seed", range(5))
def test_the_order_of_the_changed_paths_does_not_matter(seed: int) -> None:
    history, change, link_columns = random_case(seed)
    matrix = build_features(history, change, link_columns, at=AT)
    order = np.random.default_rng(seed + 200).permutation(len(change.paths))
    permuted = build_features(
        history,
        ChangeColumns.of([change.paths[i] for i in order], change.changed_lines, change.symbols),
        LinkColumns(
            link_columns.test_index,
            np.argsort(order)[link_columns.path_index],
            link_columns.changed_together,
            link_columns.failed_together,
        ),
        at=AT,
    )
    np.testing.assert_array_equal(permuted.values, matrix.values)


# --- the rules, one test and one changed path at a time -------------------------


def single(name: str, file: str | None, path: str, symbols: Sequence[str] = ()) -> dict[str, float]:
    history = HistoryColumns.unseen([name], [file])
    change = ChangeColumns.of([path], symbols=symbols)
    matrix = build_features(history, change, LinkColumns.empty(), at=AT)
    return {name: float(matrix.values[0, j]) for j, name in enumerate(FEATURE_NAMES)}


@pytest.mark.parametrize(
    ("name", "file", "path", "expected"),
    [
        # pytest node ids: the file is the id's head.
        ("tests/unit/test_io.py::TestReader::test_eof", None, "tests/unit/test_io.py", 1),
        # A file kept relative to a sub-project matches on whole components.
        ("tests/test_io.py::test_a", None, "python/tests/test_io.py", 1),
        ("tests/test_io.py::test_a", None, "python/mytests/test_io.py", 0),
        ("tests/test_io.py::test_a", None, "tests/test_io.pyi", 0),
        # Java with its file.
        (
            "core/src/test/java/org/x/FooTest.java::org.x.FooTest::testBar",
            "core/src/test/java/org/x/FooTest.java",
            "core/src/test/java/org/x/FooTest.java",
            1,
        ),
        # Java (or Kotlin) classes without a file: org.x.FooTest is org/x/FooTest.*.
        ("org.x.FooTest::testBar", None, "core/src/test/java/org/x/FooTest.java", 1),
        ("org.x.FooTest::testBar", None, "src/test/kotlin/org/x/FooTest.kt", 1),
        ("org.x.FooTest$Inner::testBar", None, "src/test/java/org/x/FooTest.java", 1),
        ("org.x.FooTest::testBar", None, "src/test/java/org/y/FooTest.java", 0),
        ("org.x.FooTest::testBar", None, "src/test/java/org/x/FooTestHelper.java", 0),
        ("org.x.FooTest::testBar", None, "org.txt", 0),
        # pytest's xunit2 names: module (and class) dotted.
        ("tests.test_x.TestY::test_z", None, "tests/test_x.py", 1),
        ("tests.test_x::test_z", None, "tests/test_x.py", 1),
        ("tests.test_x.TestY::test_z", None, "tests/test_y.py", 0),
        # A root-level file reported without `file`.
        ("test_x.py::test_a", None, "test_x.py", 1),
        # A Jest spec.
        (
            "web/src/Button.spec.ts::Button renders",
            "web/src/Button.spec.ts",
            "web/src/Button.spec.ts",
            1,
        ),
        # What the test is named after is not its own file.
        ("tests/test_io.py::test_a", None, "src/io.py", 0),
        # Ids that name no file: unknown.
        ("smoke check", None, "smoke check", NAN),
        ("Button renders::works", None, "Button renders", NAN),
    ],
)
def test_own_file_changed(name: str, file: str | None, path: str, expected: float) -> None:
    assert single(name, file, path)["own_file_changed"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("name", "file", "path", "expected"),
    [
        (
            "src/test/java/org/x/FooTest.java::org.x.FooTest::testBar",
            "src/test/java/org/x/FooTest.java",
            "src/main/java/org/x/Foo.java",
            1,
        ),
        (
            "src/test/java/org/x/FooIT.java::org.x.FooIT::testA",
            None,
            "src/main/java/org/x/Foo.java",
            1,
        ),
        ("org.x.FooTest::testBar", None, "src/main/java/org/x/Foo.java", 1),
        ("tests/unit/test_io.py::test_a", None, "src/pkg/io.py", 1),
        ("pkg/io_test.go::TestRead", "pkg/io_test.go", "pkg/io.go", 1),
        ("web/src/Button.spec.ts::Button renders", None, "web/src/button.tsx", 1),
        ("tests.test_x.TestY::test_z", None, "src/x.py", 1),
        ("tests.test_x.TestY::test_z", None, "src/y.py", 1),
        ("tests/unit/test_io.py::test_a", None, "src/pkg/iox.py", 0),
        ("tests/unit/test_io.py::test_a", None, "tests/unit/test_io.py", 0),
        # Not named after anything: latest is not la + test.
        ("tests/latest.py::test_a", None, "src/la.py", NAN),
        ("tests/conftest.py::test_a", None, "src/conf.py", NAN),
        ("smoke check", None, "src/smoke.py", NAN),
    ],
)
def test_subject_changed(name: str, file: str | None, path: str, expected: float) -> None:
    assert single(name, file, path)["subject_changed"] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("name", "changed", "named", "tokens"),
    [
        ("tests/test_more.py::WindowedTests::test_basic", ["windowed"], 1, 1 / 2),
        ("tests/test_more.py::test_windowed", ["windowed"], 1, 1),
        ("tests/test_more.py::test_windowed_basic", ["windowed"], 0, 1 / 2),
        ("tests/test_more.py::test_windowed[2-x]", ["windowed"], 1, 1),
        ("org.foo.WindowedTest.testBasic", ["windowed"], 1, 1 / 2),
        ("src/W.java::org.foo.WindowedTest::testBasic", ["Windowed.basic"], 1, 1),
        ("tests/test_more.py::SlidingWindowTests::test_it", ["sliding_window"], 1, 2 / 3),
        # The file is not a part that names a symbol; test/tests are no word.
        ("tests/windowed.py::test_a", ["windowed"], 0, 0),
        ("tests/test_more.py::Tests::test", ["test"], 0, 0),
        ("tests/test_more.py::test_a", [], NAN, NAN),
    ],
)
def test_symbols(name: str, changed: list[str], named: float, tokens: float) -> None:
    row = single(name, None, "more_itertools/more.py", changed)
    assert row["symbol_named"] == pytest.approx(named, nan_ok=True)
    assert row["symbol_tokens"] == pytest.approx(tokens, nan_ok=True)


@pytest.mark.parametrize(
    ("test_file", "path", "expected"),
    [
        ("tests/unit/test_a.py", "tests/unit/x.py", 0),
        ("tests/unit/test_a.py", "tests/x.py", 1),
        ("tests/unit/test_a.py", "src/x.py", 3),
        ("tests/unit/test_a.py", "README.md", 2),
        ("test_a.py", "a/b/c.py", 2),
        ("a/b/test_t.py", "a/bb/x.py", 2),
        ("a/b/test_t.py", "a/b/c/d/x.py", 2),
    ],
)
def test_path_distance(test_file: str, path: str, expected: float) -> None:
    assert single(f"{test_file}::test_a", test_file, path)["path_distance"] == expected


def test_tokens_split_on_separators_and_humps() -> None:
    # Tokens: src, http, server, foo, bar, baz, qux, py, test, x, y, 2; the
    # path's: src, http, server, main: 3 shared of 13.
    name = "src/HTTPServer/fooBar_baz-qux.py::TestX::test_y2"
    assert single(name, None, "src/main/http-server")["token_jaccard"] == pytest.approx(3 / 13)


def test_co_failure_uses_the_prior_for_paths_without_links() -> None:
    one_path = ChangeColumns.of(PATHS[:1])
    link_columns = LinkColumns.from_sequences(
        test_index=[0, 1], path_index=[0, 0], changed_together=[100, 1], failed_together=[0, 1]
    )
    matrix = build(one_path, link_columns)
    # 0: a hundred builds together without a failure is below no evidence.
    assert_columns(
        matrix,
        {
            "cofail_max": [strength(0, 100), strength(1, 1), PRIOR, PRIOR, PRIOR],
            "cofail_sum": [0, 1, 0, 0, 0],
            "cochange_max": [100, 1, 0, 0, 0],
        },
    )


# --- inputs that do not fit -------------------------------------------------------


def test_changed_paths_must_be_distinct() -> None:
    with pytest.raises(FeatureInputError, match="distinct"):
        ChangeColumns.of(["a.py", "a.py"])


@pytest.mark.parametrize(
    ("test", "path"),
    [(5, 0), (-1, 0), (0, 3), (0, -1)],
)
def test_links_must_point_inside(test: int, path: int) -> None:
    link_columns = LinkColumns.from_sequences(
        test_index=[test], path_index=[path], changed_together=[1], failed_together=[0]
    )
    with pytest.raises(FeatureInputError, match="out of range"):
        build(link_columns=link_columns)


def test_columns_must_have_one_length() -> None:
    with pytest.raises(FeatureInputError, match="runs"):
        HistoryColumns(**{**vars(history()), "runs": np.zeros(4)})
    with pytest.raises(FeatureInputError, match="one length"):
        LinkColumns.from_sequences(
            test_index=[0, 1], path_index=[0], changed_together=[1], failed_together=[0]
        )
