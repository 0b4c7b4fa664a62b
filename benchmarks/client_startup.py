"""The light client as a CI step gets it: installed into a fresh virtual
environment from this repository alone (pip; requests and the build backend
from the package registry), how much it installs, and how fast
`riskrank-client upload --help` starts.

    .venv/bin/python benchmarks/client_startup.py [--runs 20] [--compare 5] [--json-out F]

Installed size: the new environment's site-packages minus a bare one's
(made the same way, with pip only), in MB, and the distributions it adds.
Start-up: the median wall time of `riskrank-client upload --help` over
--runs runs (after one unmeasured run that warms the file cache). With
--compare N, the server's `riskrank --help` (beside this interpreter; the
server's CLI had the upload until the light client took it) is timed N
times too, for comparison."""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENT = ROOT / "clients" / "riskrank-client"
SERVER = Path(os.path.abspath(sys.executable)).with_name("riskrank")


def _run(argv: list[str]) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)  # noqa: S603  (our argv)


def _site_packages(venv: Path) -> Path:
    [found] = venv.glob("lib/python*/site-packages")
    return found


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _distributions(venv: Path) -> set[str]:
    return {path.name.split("-")[0].lower() for path in _site_packages(venv).glob("*.dist-info")}


def _venv(path: Path) -> Path:
    _run([sys.executable, "-m", "venv", str(path)])
    return path


def _timings(argv: list[str], runs: int) -> list[float]:
    subprocess.run(argv, check=True, capture_output=True)  # noqa: S603  (warm the file cache)
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(argv, check=True, capture_output=True)  # noqa: S603  (our argv)
        seconds.append(time.perf_counter() - started)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    parser.add_argument(
        "--compare", type=int, default=0, help="also time the server's `riskrank --help`"
    )
    parser.add_argument("--json-out", type=Path, metavar="FILE", help="also write the figures here")
    options = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="riskrank-client-bench-") as temporary:
        bare = _venv(Path(temporary) / "bare")
        venv = _venv(Path(temporary) / "client")
        started = time.perf_counter()
        _run([str(venv / "bin" / "pip"), "install", "--quiet", str(CLIENT)])
        install_seconds = time.perf_counter() - started
        added = sorted(_distributions(venv) - _distributions(bare))
        size = _size(_site_packages(venv)) - _size(_site_packages(bare))
        help_argv = [str(venv / "bin" / "riskrank-client"), "upload", "--help"]
        seconds = _timings(help_argv, options.runs)

    figures: dict[str, object] = {
        "python": sys.version.split()[0],
        "install_seconds": round(install_seconds, 1),
        "installed_mb": round(size / 1e6, 2),
        "distributions": added,
        "runs": options.runs,
        "upload_help_median_seconds": round(statistics.median(seconds), 3),
        "upload_help_min_seconds": round(min(seconds), 3),
        "upload_help_max_seconds": round(max(seconds), 3),
    }
    print(f"installed from {CLIENT.relative_to(ROOT)} in {install_seconds:.1f} s")
    print(f"installed size: {size / 1e6:.2f} MB, {len(added)} distributions: {', '.join(added)}")
    print(
        f"`riskrank-client upload --help`: median {statistics.median(seconds) * 1000:.0f} ms "
        f"over {options.runs} runs (min {min(seconds) * 1000:.0f} ms, "
        f"max {max(seconds) * 1000:.0f} ms)"
    )
    if options.compare:
        if not SERVER.exists():
            parser.error(f"--compare needs the server beside this interpreter ({SERVER})")
        server = _timings([str(SERVER), "--help"], options.compare)
        figures["server_help_median_seconds"] = round(statistics.median(server), 3)
        print(
            f"`riskrank --help` (the server's): median "
            f"{statistics.median(server) * 1000:.0f} ms over {options.compare} runs"
        )
    if options.json_out is not None:
        options.json_out.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
