"""The names tests and changed symbols are read by (scheduler/risk/symbols.py)."""

from __future__ import annotations

import pytest

from scheduler.risk import symbols


@pytest.mark.parametrize(
    ("name", "parts", "stems", "tokens"),
    [
        (
            "tests/test_more.py::WindowedTests::test_basic",
            ("WindowedTests", "test_basic"),
            {"windowed", "basic"},
            {"windowed", "basic"},
        ),
        (
            "tests/test_more.py::test_sliding_window[3-x::y]",
            ("test_sliding_window",),
            {"slidingwindow"},
            {"sliding", "window"},
        ),
        (
            "org.foo.WindowedTest.testBasic",
            ("WindowedTest", "testBasic"),
            {"windowed", "basic"},
            {"windowed", "basic"},
        ),
        (
            "org.foo.WindowedTest::testBasic",
            ("WindowedTest", "testBasic"),
            {"windowed", "basic"},
            {"windowed", "basic"},
        ),
        (
            "src/test/java/W.java::org.foo.HTTPServerTest::testGetURL2(int)[1]",
            ("HTTPServerTest", "testGetURL2"),
            {"httpserver", "geturl2"},
            {"http", "server", "get", "url", "2"},
        ),
        # pytest's xunit2 classname: the class counts, not the module.
        ("tests.test_x.TestY::test_z", ("TestY", "test_z"), {"y", "z"}, {"y", "z"}),
        # A root-level file names no symbol; its test does.
        ("test_x.py::test_a", ("test_a",), {"a"}, {"a"}),
        ("tests/test_more.py", ("test_more",), {"more"}, {"more"}),
        (
            "renders the button",
            ("renders the button",),
            {"rendersthebutton"},
            {"renders", "the", "button"},
        ),
        ("a/b.py::test", ("test",), set(), set()),
    ],
)
def test_the_parts_of_a_test_id(
    name: str, parts: tuple[str, ...], stems: set[str], tokens: set[str]
) -> None:
    assert symbols.id_parts(name) == parts
    assert symbols.id_stems(name) == stems
    assert symbols.id_tokens(name) == tokens


@pytest.mark.parametrize(
    ("symbol", "stems", "tokens"),
    [
        ("windowed", {"windowed"}, {"windowed"}),
        ("_islice_helper", {"islicehelper"}, {"islice", "helper"}),
        ("NumericRangeTests.test_eq", {"numericrange", "eq"}, {"numeric", "range", "eq"}),
        ("HTTPServer.__init__", {"httpserver"}, {"http", "server", "init"}),
        ("HTTPServer.get_url", {"httpserver", "geturl"}, {"http", "server", "get", "url"}),
        ("__init__", {"init"}, {"init"}),
        ("test", set(), set()),
    ],
)
def test_the_names_of_a_symbol(symbol: str, stems: set[str], tokens: set[str]) -> None:
    assert symbols.symbol_stems(symbol) == stems
    assert symbols.symbol_tokens(symbol) == tokens
