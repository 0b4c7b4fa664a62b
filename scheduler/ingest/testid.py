"""Riskrank's test ids: what a test's history is kept under (pure functions).

Every report format ends here (JUnit XML through `scheduler.ingest.junit`, the
JSON results as they are), so the same test gets the same id whichever way it
was reported, on whichever machine, however the report was formatted. The
rules, in order:

1. Every value is stripped, and inside it a run of whitespace counts as one
   space: re-indented or line-wrapped attributes do not change an id. Spaces
   inside a value are kept (Jest's test "renders the button", mocha's
   describe block "latexParser parse"), so "a b" and "a  b" are one test.
2. A file is written with forward slashes, without a leading `./` and
   without doubled slashes: a Windows run and a Linux run agree.
3. With a file: `file::Class::name`. For a Python file (`.py`) whose module
   path (the path with dots, without `.py`) begins the classname, the module
   path is dropped and each remaining dotted part becomes a `::` part, which is
   pytest's own node id: classname `tests.unit.test_x.TestY`, file
   `tests/unit/test_x.py`, name `test_z[p]` give
   `tests/unit/test_x.py::TestY::test_z[p]`; nested classes `A.B` give
   `::A::B`; a classname equal to the module path gives
   `tests/unit/test_x.py::test_z[p]`. Any other classname (a Java class with
   a `file`, a file that is not `.py`) is kept whole: `file::classname::name`.
   A classname that only repeats the file, or none, adds no part: `file::name`.
4. Without a file: `classname::name`.
5. Without a classname either: `name`.

Parameters stay in the name (`test_z[p]`, `TestData(2,"A")`): each
parametrisation is a test of its own. The id does not depend on the order of
attributes, the line or the time a report gives.

A test's history may be kept per CI job (a matrix variant: an OS, a
compiler), where a test red on one job and green on the others is not one
test changing status at every build. Its id in a job is then
`<id>  [job: <job>]` (`with_job`): two spaces never occur inside an id
(rule 1), nor in a job's name, so the job is read back exactly (`split_job`).
"""

from __future__ import annotations

import functools
import re

SEPARATOR = "::"

_SLASHES = re.compile(r"/{2,}")


def _collapse(value: str | None) -> str:
    # str.split() without a separator splits on runs of any whitespace and
    # drops it at both ends: rule 1 in one step.
    return " ".join(value.split()) if value else ""


def normalise_path(path: str) -> str:
    """A path as ids and results keep it: `/` separators, no leading `./`,
    no `//`, no surrounding whitespace."""
    path = _SLASHES.sub("/", path.strip().replace("\\", "/"))
    while path.startswith("./"):
        path = path[2:]
    return path


def _class_parts(classname: str, path: str) -> list[str]:
    """The `::` parts a classname adds after its file (rule 3)."""
    if not classname or normalise_path(classname) == path:
        return []
    if path.endswith(".py"):
        module = path.removesuffix(".py").replace("/", ".")
        if classname == module:
            return []
        if classname.startswith(module + "."):
            rest = classname[len(module) + 1 :].split(".")
            return [part.strip() for part in rest if part.strip()]
    return [classname]


@functools.lru_cache(maxsize=4096)
def _prefix(classname: str | None, file: str | None) -> str:
    """Everything of an id before the name: the same for every test of a
    class, so a report of thousands of tests works it out once per class."""
    owner = _collapse(classname)
    path = normalise_path(_collapse(file))
    if path:
        return SEPARATOR.join([path, *_class_parts(owner, path), ""])
    if owner:
        return owner + SEPARATOR
    return ""


def canonical_test_id(*, name: str, classname: str | None = None, file: str | None = None) -> str:
    """The id of the test a report calls `name` in `classname` and `file`
    (the rules are in the module docstring)."""
    test = _collapse(name)
    if not test:
        raise ValueError("a test id needs a name")
    return _prefix(classname, file) + test


JOB_MARK = "  [job: "


def normalise_job(job: str | None) -> str | None:
    """A job's name as ids keep it (whitespace as in rule 1); None for none."""
    collapsed = _collapse(job)
    return collapsed or None


def with_job(test_id: str, job: str | None) -> str:
    """The id of `test_id` in CI job `job` (itself without a job)."""
    name = normalise_job(job)
    return test_id if name is None else f"{test_id}{JOB_MARK}{name}]"


def split_job(test_id: str) -> tuple[str, str | None]:
    """The id without its job, and the job (None: kept for every job)."""
    test, mark, job = test_id.rpartition(JOB_MARK)
    if not mark or not job.endswith("]"):
        return test_id, None
    return test, job[:-1]
