"""The `riskrank-client` command: upload, plan, event. argparse only, and
nothing heavy imported before a command has something to send: a CI step
pays for the client in milliseconds."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from riskrank_client import __version__, event, plan, upload

Command = Callable[[argparse.Namespace, Mapping[str, str], Path], int]


def parser() -> argparse.ArgumentParser:
    main_parser = argparse.ArgumentParser(
        prog="riskrank-client",
        description="riskrank from a CI step: send test reports, ask for a plan, "
        "send the commit event. Settings come from options, RISKRANK_* variables, "
        "then the CI system and git.",
    )
    main_parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = main_parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module, summary in (
        ("upload", upload, "Upload test reports (JUnit XML, results JSON). Fails open."),
        ("plan", plan, "Print the tests to run; exit 3: run the whole suite."),
        ("event", event, "Send the generic commit event, from git. Fails open."),
    ):
        command = commands.add_parser(
            name,
            help=summary,
            description=(module.__doc__ or summary).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(command)
        run: Command = module.run
        command.set_defaults(run=run)
    return main_parser


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    run: Command = args.run
    return run(args, os.environ, Path.cwd())
