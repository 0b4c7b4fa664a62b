"""Tests and the symbols a change touched, by name (pure functions): the
words of a test id's parts and of a changed function or class, and the
"stem" they are named by.

A name is read as lower-cased tokens: letters cut at camelCase humps and at
anything else (`_`, `.`, digits stand alone), without the tokens `test` and
`tests`, which say that a test is one, not what it tests. The stem is the
tokens joined: `WindowedTests`, `test_windowed` and `windowed` all have the
stem `windowed`, `test_basic` has `basic`.

The parts of a test id that can name a symbol are those after its file:
`tests/test_more.py::WindowedTests::test_basic` has `WindowedTests` and
`test_basic`. A dotted classname counts by its last component
(`src/W.java::org.foo.WindowedTest::testBasic`, and without a file
`org.foo.WindowedTest::testBasic`, give `WindowedTest`); an id without `::`
(`org.foo.WindowedTest.testBasic`) by its last dotted component and the
class-like (capitalised) one before it, or when it is a path by the file's
name (`tests/test_more.py`: `test_more`). Parameters (`[...]`, `(...)`) are
not part of the name."""

from __future__ import annotations

import re

from scheduler.ingest.testid import SEPARATOR

# A token is a run of letters cut at camelCase humps (HTTPServer: http,
# server) or a run of digits; everything else only separates (the rule of
# every name the features read: ids, paths, symbols).
TOKEN = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_DROPPED = frozenset({"test", "tests"})
_DUNDER = re.compile(r"__\w+__")


def name_tokens(text: str) -> tuple[str, ...]:
    """The lower-cased tokens of a name, in order, without test/tests."""
    return tuple(token for token in map(str.lower, TOKEN.findall(text)) if token not in _DROPPED)


def stem(text: str) -> str:
    """What a name is named after: its tokens joined ("" for none)."""
    return "".join(name_tokens(text))


def _unparametrised(part: str) -> str:
    return part.split("[", 1)[0].split("(", 1)[0]


def _class_like(component: str) -> bool:
    return component[:1].isupper()


def id_parts(name: str) -> tuple[str, ...]:
    """The parts of a test id that can name what it tests (module docstring)."""
    head, separator, rest = name.partition(SEPARATOR)
    if separator:
        parts = [_unparametrised(part) for part in rest.split("[", 1)[0].split(SEPARATOR)]
        # Dotted classnames count by their last component.
        parts = [part.rpartition(".")[2] for part in parts]
        if "/" not in head and " " not in head:
            # No file: a dotted classname (org.foo.WindowedTest), or a file at
            # the root (test_x.py), which names no symbol.
            last = head.rpartition(".")[2]
            if _class_like(last):
                parts.insert(0, last)
        return tuple(part for part in parts if part)
    _, slash, base = _unparametrised(name).rpartition("/")
    if slash:
        # A path (an id that names only its file): the file's name.
        return (stem_part,) if (stem_part := base.partition(".")[0]) else ()
    components = base.split(".")
    parts = components[-1:]
    if len(components) > 1 and _class_like(components[-2]):
        parts.insert(0, components[-2])
    return tuple(part for part in parts if part)


def id_stems(name: str) -> frozenset[str]:
    """The stems of a test id's parts (without the empty one)."""
    return frozenset(found for part in id_parts(name) if (found := stem(part)))


def id_tokens(name: str) -> frozenset[str]:
    """The tokens of a test id's parts."""
    return frozenset(token for part in id_parts(name) for token in name_tokens(part))


def symbol_stems(symbol: str) -> frozenset[str]:
    """The stems a changed symbol is named by: each of its dotted components
    (`NumericRange.get_item`: numericrange, getitem), but a special method
    after the first (`NumericRange.__eq__`: numericrange), which names a
    protocol every class has, not what a test is about."""
    first, *rest = symbol.split(".")
    names = [first, *(part for part in rest if not _DUNDER.fullmatch(part))]
    return frozenset(found for name in names if (found := stem(name)))


def symbol_tokens(symbol: str) -> frozenset[str]:
    return frozenset(name_tokens(symbol))
