"""How fast JUnit XML parses: a synthetic pytest-style report of N testcases
(one in ten failing, with a message and a trace), plain and gzipped.

    .venv/bin/python benchmarks/junit_parse.py [N ...]

Prints the median CPU time of 5 runs and testcases per second."""

from __future__ import annotations

import gzip
import statistics
import sys
import time

from scheduler.ingest.junit import parse_junit


def report(n: int) -> bytes:
    cases = "".join(
        f'<testcase classname="tests.unit.test_m{i % 500}.TestC" '
        f'file="tests/unit/test_m{i % 500}.py" name="test_{i}[p]" time="0.{i % 1000}">'
        + (
            '<failure message="boom">Traceback\n  line\nAssertionError</failure>'
            if i % 10 == 0
            else ""
        )
        + "<system-out>some output</system-out></testcase>"
        for i in range(n)
    )
    return f'<testsuites><testsuite name="pytest">{cases}</testsuite></testsuites>'.encode()


def main() -> None:
    sizes = [int(arg) for arg in sys.argv[1:]] or [1_000, 10_000, 50_000]
    for n in sizes:
        data = report(n)
        for label, body in (("plain", data), ("gzip", gzip.compress(data))):
            times = []
            for _ in range(5):
                start = time.process_time()
                results = parse_junit(body, max_bytes=1 << 30)
                times.append(time.process_time() - start)
            assert len(results) == n
            median = statistics.median(times)
            print(
                f"{n:>7,} testcases ({label}, {len(body) / 2**20:5.1f} MiB): "
                f"{median * 1000:7.1f} ms, {n / median:,.0f} testcases/s"
            )


if __name__ == "__main__":
    main()
