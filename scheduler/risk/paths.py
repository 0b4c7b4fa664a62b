"""What the features need from the tests' names and files and the changed
paths: tokens, own-file keys, the subject a test is named after, extensions
and directories (the rules are at `_own_keys` and `_subject`), kept per
repository in a `PathIndex`."""

from __future__ import annotations

import itertools
import posixpath
import re
from collections import Counter
from collections.abc import Collection, Iterable, Sequence

import numpy as np
import numpy.typing as npt

from scheduler.ingest.testid import SEPARATOR
from scheduler.risk import symbols
from scheduler.risk.columns import BoolArray, FeatureInputError, FloatArray, IndexArray

# Pair matrices (changed paths x tests) are built this many cells at a time:
# 20 paths x 10,000 tests is one go, and a merge commit of a thousand paths
# stays near 20 MiB (and is faster than in bigger pieces).
_CELLS_PER_CHUNK = 1 << 18


# A token is a run of letters cut at camelCase humps (HTTPServer: http,
# server) or a run of digits; everything else (/ . _ - :: spaces brackets)
# only separates. Tokens are compared lower-cased, as sets.
_TOKEN = symbols.TOKEN

# How a test file or class is named after what it tests: FooTest, FooTests,
# FooSpec, FooIT, foo_test, foo-spec, foo.spec (.ts), test_foo, TestFoo.
_TEST_SUFFIX = re.compile(
    r"(?:[._-](?:[Tt]ests?|TESTS?|[Ss]pecs?)|(?<=[a-z0-9])(?:Tests?|Specs?|IT))$"
)
_TEST_PREFIX = re.compile(r"^(?:[Tt]ests?[._-]|Test(?=[A-Z0-9]))")


def _tokens(text: str) -> set[str]:
    return {token.lower() for token in _TOKEN.findall(text)}


def _directory(path: str) -> str:
    return path.rpartition("/")[0]


def _stem(path: str) -> str:
    """The base name without its last extension."""
    return posixpath.splitext(path.rpartition("/")[2])[0]


def _extension(path: str) -> str:
    """The last extension of the base name, lower-cased, without the dot; ""
    for none (`Makefile`, `.gitignore`)."""
    return posixpath.splitext(path.rpartition("/")[2])[1][1:].lower()


def _top_dir(path: str) -> str:
    """The first directory of a path; "" for a file at the root."""
    head, slash, _ = path.partition("/")
    return head if slash else ""


def _owner(name: str, file: str | None) -> tuple[str | None, str | None]:
    """What a test shares with the other tests of its file or class: its
    known_tests.file and the part of its id before the first `::` (None
    for an id without one)."""
    head, separator, _ = name.partition(SEPARATOR)
    return file or None, head if separator else None


def _test_file(file: str | None, head: str | None) -> str | None:
    """The test's file: known_tests.file, else the head of its id when that
    is a path (has a `/`). A dotted classname (`org.x.FooTest::testBar`,
    `tests.test_x.TestY::test_z`) names a class, not a file: unknown."""
    if file:
        return file
    return head if head is not None and "/" in head else None


def _dotted_head(file: str | None, head: str | None) -> str | None:
    """The dotted classname that starts an id without a file, if any."""
    if file or head is None or "/" in head or " " in head:
        return None
    return head


def _class_keys(head: str) -> list[str]:
    """The module or class paths a dotted classname can live in.

    `org.x.FooTest` (Java) lives in a file whose path ends in org/x/FooTest;
    `tests.test_x.TestY` (pytest's xunit2) in one ending in tests/test_x. So
    a key is every leading run of the parts that is followed only by
    class-like (capitalised) parts: org.x.FooTest and org.x, or
    tests.test_x.TestY and tests.test_x. A nested class's `$Inner` is cut."""
    parts = [part.partition("$")[0] for part in head.split(".")]
    if not all(parts):
        return []
    keys = []
    for size in range(len(parts), 0, -1):
        keys.append(".".join(parts[:size]))
        if not parts[size - 1][:1].isupper():
            break
    return keys


def _own_keys(file: str | None, head: str | None) -> list[str]:
    """Keys that a changed path matching the test's own file also yields
    (`_path_keys`). The rules:

    - With a file (known_tests.file, or a path before `::`), the changed path
      is that file, or ends in `/` + it (a file kept relative to a
      sub-project: `tests/test_io.py` matches `python/tests/test_io.py`).
    - With a dotted classname instead, the changed path without its
      extension, read with `.` for `/`, ends in one of its `_class_keys`
      (`org.x.FooTest` matches `src/test/java/org/x/FooTest.java` and a
      `FooTest.kt` in `org/x`; `tests.test_x.TestY` matches `tests/test_x.py`).
      The classname is also tried as a path, for a root-level file
      reported without `file` (`test_x.py::test_a`).
    - Without either (an id with no `::`), nothing is known: NaN.
    """
    path = _test_file(file, head)
    if path is not None:
        return ["/" + path]
    dotted = _dotted_head(file, head)
    if dotted is None:
        return []
    return ["/" + dotted, *("." + key for key in _class_keys(dotted))]


def _path_keys(path: str) -> list[str]:
    """Every key of `_own_keys` that a changed path matches: its trailing
    runs of components, as a path and, without the extension, dotted."""
    parts = path.split("/")
    dotted = [*parts[:-1], _stem(path)]
    return [
        key
        for size in range(1, len(parts) + 1)
        for key in ("/" + "/".join(parts[-size:]), "." + ".".join(dotted[-size:]))
    ]


def _subject(stem: str) -> str | None:
    """The lower-cased name a test file or class is named after (FooTest,
    FooTests, FooSpec, FooIT, test_foo, TestFoo, foo_test, foo-spec,
    foo.spec: foo); None without such an affix."""
    bare = _TEST_PREFIX.sub("", _TEST_SUFFIX.sub("", stem, count=1), count=1)
    return bare.lower() if bare and bare != stem else None


def _subjects(file: str | None, head: str | None) -> set[str]:
    """What the test is named after (`_subject`): the stem of its file,
    else of any part of its dotted classname (org.x.FooTest: foo;
    tests.test_x.TestY: x and y). A changed path with that stem, in any
    directory and case (Foo.java, x.py), is its subject."""
    path = _test_file(file, head)
    if path is not None:
        stems = [_stem(path)]
    else:
        dotted = _dotted_head(file, head)
        stems = [part.partition("$")[0] for part in dotted.split(".")] if dotted else []
    return {subject for stem in stems if (subject := _subject(stem)) is not None}


def _chunks(count: int, width: int) -> Iterable[slice]:
    """Slices of range(count) of about _CELLS_PER_CHUNK / width each."""
    step = max(1, _CELLS_PER_CHUNK // max(width, 1))
    return (slice(start, start + step) for start in range(0, count, step))


# --- the per-repository index -------------------------------------------------


class _Postings:
    """An inverted index of one token set per index row (CSR): the rows of
    token t are rows[start[t]:start[t + 1]]; count is each row's set size.
    Immutable: `extended` returns a new one."""

    def __init__(
        self,
        vocabulary: dict[str, int],
        rows: IndexArray,
        start: IndexArray,
        count: npt.NDArray[np.float32],
    ) -> None:
        self.vocabulary, self.rows, self.start, self.count = vocabulary, rows, start, count

    @classmethod
    def empty(cls) -> _Postings:
        return cls(
            {},
            np.empty(0, dtype=np.intp),
            np.zeros(1, dtype=np.intp),
            np.empty(0, dtype=np.float32),
        )

    def extended(self, row_tokens: Sequence[frozenset[str]]) -> _Postings:
        """With the sets of the rows that follow (len(count), len(count) + 1, …)."""
        vocabulary = dict(self.vocabulary)
        unseen = frozenset().union(*row_tokens).difference(vocabulary)
        vocabulary.update(zip(sorted(unseen), itertools.count(len(vocabulary))))
        counts = np.fromiter(map(len, row_tokens), dtype=np.intp, count=len(row_tokens))
        tokens = np.concatenate(
            (
                np.repeat(np.arange(len(self.start) - 1), np.diff(self.start)),
                np.fromiter(
                    map(vocabulary.__getitem__, itertools.chain.from_iterable(row_tokens)),
                    dtype=np.intp,
                    count=int(counts.sum()),
                ),
            )
        )
        first = len(self.count)
        rows = np.concatenate(
            (self.rows, np.repeat(np.arange(first, first + len(row_tokens)), counts))
        )
        start = np.zeros(len(vocabulary) + 1, dtype=np.intp)
        np.cumsum(np.bincount(tokens, minlength=len(vocabulary)), out=start[1:])
        return _Postings(
            vocabulary,
            rows[np.argsort(tokens, kind="stable")],
            start,
            np.concatenate((self.count, counts.astype(np.float32))),
        )

    def similarity(self, token_sets: Sequence[Collection[str]]) -> npt.NDArray[np.float32]:
        """Per row, the max over `token_sets` of |T and S| / |T or S| for the
        row's set T and the given S. The intersections come from one bincount
        over the postings of the sets' tokens, never from a loop over the
        rows."""
        size = len(self.count)
        best = np.zeros(size, dtype=np.float32)
        for chunk in _chunks(len(token_sets), size):
            sets = token_sets[chunk]
            slices = [
                (offset * size, self.start[number], self.start[number + 1])
                for offset, tokens in enumerate(sets)
                for token in tokens
                if (number := self.vocabulary.get(token)) is not None
            ]
            postings = np.concatenate(
                [np.empty(0, dtype=np.intp)]
                + [self.rows[start:stop] + shift for shift, start, stop in slices]
            )
            shared = np.bincount(postings, minlength=len(sets) * size).reshape(len(sets), size)
            similarity = shared.astype(np.float32)
            union = np.add.outer(
                np.fromiter(map(len, sets), dtype=np.float32, count=len(sets)), self.count
            )
            union -= similarity
            # Both sets empty: 0 / 1.
            np.maximum(union, 1.0, out=union)
            similarity /= union
            np.maximum(best, similarity.max(axis=0), out=best)
        return best


class PathIndex:
    """What the features need from the tests' names and files alone, for
    every test a repository knows: build it once, keep it, pass it to each
    build. Tests are found by name; a test's file is the one given when it
    was added (the first, for a name given twice). Immutable: `covering`
    returns a new index, which indexes only the tests it adds.

    Most of it is kept per *owner* (a file or class, shared by its tests):
    own-file keys, subjects, extension, top directory and directory."""

    names: tuple[str, ...]
    files: tuple[str | None, ...]
    _position: dict[str, int]  # name -> row
    # Per row: the tokens of its id, and of its parts that can name a symbol
    # (scheduler.risk.symbols), as inverted indexes; the stems of those
    # parts (stem -> rows).
    _tokens: _Postings
    _part_tokens: _Postings
    _part_stems: dict[str, list[int]]
    # Owners: (file, head) -> owner, and the owner of each row.
    _owners: dict[tuple[str | None, str | None], int]
    _owner_of_row: IndexArray
    # Per owner: own-file keys and subjects (key -> owners), what it has,
    # and ids of its extension, top directory and directory (-1: no file).
    _own: dict[str, list[int]]
    _subjects: dict[str, list[int]]
    _has_own: BoolArray
    _has_subject: BoolArray
    _extensions: dict[str, int]
    _tops: dict[str, int]
    _directories: dict[str, int]
    _extension_id: IndexArray
    _top_id: IndexArray
    _directory_id: IndexArray
    # Per directory: prefix ids (padded with -1) and depth.
    _prefixes: dict[str, int]
    _directory_prefixes: IndexArray
    _directory_depth: FloatArray

    def __init__(
        self,
        names: Sequence[str],
        files: Sequence[str | None],
        *,
        extending: PathIndex | None = None,
    ) -> None:
        """An index of these tests, added to `extending`'s (which stays as
        it is) when given."""
        if len(names) != len(files):
            raise FeatureInputError("names and files must have one entry per test")
        base = extending if extending is not None else _EMPTY_INDEX
        added: dict[str, str | None] = {}
        for name, file in zip(names, files, strict=True):
            if name not in base._position and name not in added:
                added[name] = file
        first_row = len(base.names)
        self.names = base.names + tuple(added)
        self.files = base.files + tuple(added.values())
        self._position = dict(base._position)
        self._position.update(zip(added, itertools.count(first_row)))
        self._index_tokens(base, added)
        self._index_owners(base, added)

    def _index_tokens(self, base: PathIndex, added: dict[str, str | None]) -> None:
        # Tokens per test, through a cache of the `::` parts: a file's or a
        # class's tests repeat theirs.
        pieces: dict[str, frozenset[str]] = {}

        def tokens_of(text: str) -> frozenset[str]:
            found = pieces.get(text)
            if found is None:
                found = pieces[text] = frozenset(map(str.lower, _TOKEN.findall(text)))
            return found

        self._tokens = base._tokens.extended(
            [frozenset().union(*map(tokens_of, name.split(SEPARATOR))) for name in added]
        )
        # The words of the parts that can name a symbol, through a cache of
        # their texts likewise (a class's tests repeat its name).
        words: dict[str, tuple[str, ...]] = {}

        def words_of(part: str) -> tuple[str, ...]:
            found = words.get(part)
            if found is None:
                found = words[part] = symbols.name_tokens(part)
            return found

        part_tokens: list[frozenset[str]] = []
        stems: dict[str, list[int]] = {}
        for row, name in enumerate(added, start=len(base.names)):
            named = [words_of(part) for part in symbols.id_parts(name)]
            part_tokens.append(frozenset().union(*named))
            for stem in {"".join(tokens) for tokens in named if tokens}:
                stems.setdefault(stem, []).append(row)
        self._part_tokens = base._part_tokens.extended(part_tokens)
        # The lists are never changed once made.
        self._part_stems = {
            **base._part_stems,
            **{k: [*base._part_stems.get(k, ()), *v] for k, v in stems.items()},
        }

    def _index_owners(self, base: PathIndex, added: dict[str, str | None]) -> None:
        self._owners = dict(base._owners)
        first_owner = len(self._owners)
        owner_of_row = [
            self._owners.setdefault(_owner(name, file), len(self._owners))
            for name, file in added.items()
        ]
        self._owner_of_row = np.concatenate(
            (base._owner_of_row, np.asarray(owner_of_row, dtype=np.intp))
        )

        own: dict[str, list[int]] = {}
        subjects: dict[str, list[int]] = {}
        self._extensions = dict(base._extensions)
        self._tops = dict(base._tops)
        self._directories = dict(base._directories)
        new = len(self._owners) - first_owner
        has_own = np.zeros(new, dtype=np.bool_)
        has_subject = np.zeros(new, dtype=np.bool_)
        extension_id, top_id, directory_id = (np.full(new, -1, dtype=np.intp) for _ in range(3))
        for number, (file, head) in enumerate(itertools.islice(self._owners, first_owner, None)):
            owner = first_owner + number
            for key in _own_keys(file, head):
                own.setdefault(key, []).append(owner)
                has_own[number] = True
            for subject in _subjects(file, head):
                subjects.setdefault(subject, []).append(owner)
                has_subject[number] = True
            path = _test_file(file, head)
            if path is not None:
                extension_id[number] = self._extensions.setdefault(
                    _extension(path), len(self._extensions)
                )
                top_id[number] = self._tops.setdefault(_top_dir(path), len(self._tops))
                directory_id[number] = self._directories.setdefault(
                    _directory(path), len(self._directories)
                )
        # Keys point at owners; the lists are never changed once made.
        self._own = {**base._own, **{k: [*base._own.get(k, ()), *v] for k, v in own.items()}}
        self._subjects = {
            **base._subjects,
            **{k: [*base._subjects.get(k, ()), *v] for k, v in subjects.items()},
        }
        self._has_own = np.concatenate((base._has_own, has_own))
        self._has_subject = np.concatenate((base._has_subject, has_subject))
        self._extension_id = np.concatenate((base._extension_id, extension_id))
        self._top_id = np.concatenate((base._top_id, top_id))
        self._directory_id = np.concatenate((base._directory_id, directory_id))

        # Directories as rows of prefix ids: two directories share their
        # first k components exactly where their first k prefix ids agree.
        self._prefixes = dict(base._prefixes)
        components = [
            directory.split("/") if directory else []
            for directory in itertools.islice(self._directories, len(base._directory_depth), None)
        ]
        depth = max([base._directory_prefixes.shape[1], *map(len, components)])
        prefixes = np.full((len(self._directories), depth), -1, dtype=np.intp)
        prefixes[: len(base._directory_depth), : base._directory_prefixes.shape[1]] = (
            base._directory_prefixes
        )
        for number, parts in enumerate(components, start=len(base._directory_depth)):
            for level in range(len(parts)):
                prefixes[number, level] = self._prefixes.setdefault(
                    "/".join(parts[: level + 1]), len(self._prefixes)
                )
        self._directory_prefixes = prefixes
        self._directory_depth = np.concatenate(
            (base._directory_depth, np.fromiter(map(len, components), dtype=np.float64))
        )

    @classmethod
    def _empty(cls) -> PathIndex:
        index = cls.__new__(cls)
        index.names, index.files, index._position = (), (), {}
        index._owners = {}
        index._tokens = index._part_tokens = _Postings.empty()
        index._part_stems = {}
        index._owner_of_row = np.empty(0, dtype=np.intp)
        index._own, index._subjects = {}, {}
        index._extensions, index._tops, index._directories, index._prefixes = {}, {}, {}, {}
        index._has_own = index._has_subject = np.empty(0, dtype=np.bool_)
        index._extension_id = index._top_id = index._directory_id = np.empty(0, dtype=np.intp)
        index._directory_prefixes = np.empty((0, 0), dtype=np.intp)
        index._directory_depth = np.empty(0, dtype=np.float64)
        return index

    def __len__(self) -> int:
        return len(self.names)

    @property
    def sizes(self) -> dict[str, int]:
        """How big it is: tests, owners (files or classes), tokens, directories."""
        return {
            "tests": len(self.names),
            "owners": len(self._owners),
            "tokens": len(self._tokens.vocabulary),
            "directories": len(self._directories),
        }

    def rows(self, names: Sequence[str]) -> IndexArray | None:
        """The index rows of these tests, None if some are not in it."""
        try:
            return np.fromiter(
                map(self._position.__getitem__, names), dtype=np.intp, count=len(names)
            )
        except KeyError:
            return None

    def covering(self, names: Sequence[str], files: Sequence[str | None]) -> PathIndex:
        """This index if it knows every test named, else a new one that also
        does (the work is for the new tests only, plus a re-sort of the
        token postings)."""
        if all(map(self._position.__contains__, names)):
            return self
        return PathIndex(names, files, extending=self)

    def features(self, rows: IndexArray, paths: Sequence[str]) -> dict[str, FloatArray]:
        """The features (FEATURE_NAMES) of the tests at index `rows` that come
        from the changed `paths` and the tests' names and files alone."""
        n = len(rows)
        owners = self._owner_of_row[rows]
        extensions = [_extension(path) for path in paths]
        tops = [_top_dir(path) for path in paths]
        own = self._hits(self._own, (key for path in paths for key in _path_keys(path)))
        subject = self._hits(self._subjects, (_stem(path).lower() for path in paths))
        columns = {
            "changed_extensions": np.full(n, len(set(extensions)), dtype=np.float64),
            "changed_top_dirs": np.full(n, len(set(tops)), dtype=np.float64),
            "same_extension_share": _shares(
                self._extensions, self._extension_id[owners], extensions
            ),
            "same_top_dir_share": _shares(self._tops, self._top_id[owners], tops),
            "own_file_changed": np.where(self._has_own[owners], own[owners], np.nan),
            "subject_changed": np.where(self._has_subject[owners], subject[owners], np.nan),
        }
        if paths:
            columns.update(
                path_distance=self._distance(paths)[self._directory_id[owners]],
                token_jaccard=self._tokens.similarity([_tokens(path) for path in paths])[
                    rows
                ].astype(np.float64),
            )
        else:
            columns.update(path_distance=np.full(n, np.nan), token_jaccard=np.full(n, np.nan))
        return columns

    def symbol_features(self, rows: IndexArray, changed: Sequence[str]) -> dict[str, FloatArray]:
        """The features (FEATURE_NAMES) of the tests at index `rows` that
        link them to the `changed` symbols (scheduler.risk.symbols): NaN
        when the change names none."""
        if not changed:
            nothing = np.full(len(rows), np.nan)
            return {"symbol_named": nothing, "symbol_tokens": nothing.copy()}
        stems = {stem for symbol in changed for stem in symbols.symbol_stems(symbol)}
        named = self._hits(self._part_stems, stems, size=len(self.names))
        similarity = self._part_tokens.similarity([symbols.symbol_tokens(s) for s in changed])
        return {
            "symbol_named": named[rows].astype(np.float64),
            "symbol_tokens": similarity[rows].astype(np.float64),
        }

    def _hits(
        self, postings: dict[str, list[int]], keys: Iterable[str], *, size: int | None = None
    ) -> BoolArray:
        """Per owner (or per row, with the index's `size`): does one of
        `keys` point at it?"""
        hit = np.zeros(len(self._owners) if size is None else size, dtype=np.bool_)
        for key in keys:
            found = postings.get(key)
            if found is not None:
                hit[found] = True
        return hit

    def _distance(self, paths: Sequence[str]) -> FloatArray:
        """Per directory id (and NaN last, for id -1), the fewest steps (up
        to the deepest shared directory, then down) from a changed path's
        directory: worked out once per directory, not per test."""
        prefixes = self._directory_prefixes
        count, depth = prefixes.shape
        best = np.full(count + 1, np.inf)
        for chunk in _chunks(len(paths), count * max(depth, 1)):
            changed = [_directory(path) for path in paths[chunk]]
            # -2 never equals a test directory's prefix (ids >= 0, padding -1).
            query = np.full((len(changed), depth), -2, dtype=np.intp)
            changed_depth = np.empty(len(changed), dtype=np.float64)
            for number, directory in enumerate(changed):
                parts = directory.split("/") if directory else []
                changed_depth[number] = len(parts)
                for level in range(min(len(parts), depth)):
                    query[number, level] = self._prefixes.get("/".join(parts[: level + 1]), -2)
            common = (prefixes[:, None, :] == query[None, :, :]).sum(axis=2)
            steps = np.add.outer(self._directory_depth, changed_depth) - 2.0 * common
            np.minimum(best[:count], steps.min(axis=1, initial=np.inf), out=best[:count])
        best[np.isinf(best)] = np.nan
        return best


_EMPTY_INDEX = PathIndex._empty()


def _shares(vocabulary: dict[str, int], ids: IndexArray, changed: Sequence[str]) -> FloatArray:
    """Per test, the share of `changed` equal to its own value (ids into
    vocabulary; -1, unknown, and an empty change give NaN)."""
    if not changed:
        return np.full(ids.shape, np.nan)
    share = np.zeros(len(vocabulary) + 1, dtype=np.float64)
    share[-1] = np.nan  # what id -1 reads
    for value, count in Counter(changed).items():
        number = vocabulary.get(value)
        if number is not None:
            share[number] = count / len(changed)
    return share[ids]
