"""The ``nasnet-zoo`` command: one subcommand per job, each declared beside its handler (`options.Command`),
and one place where failures become messages and exit statuses (`main`). Nothing imports this package.

Exit status: 0 done; 1 the command could not do what was asked (a `NasnetZooError` or an OS error: the message
says what is wrong and what to do); 2 the command line itself is wrong (argparse's rule); 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from ..errors import NasnetZooError
from . import hub, models, searching, training
from .options import Command, UsageError

COMMANDS: list[Command] = [*models.COMMANDS, *hub.COMMANDS, *training.COMMANDS, *searching.COMMANDS]

DESCRIPTION = """\
NASNet-A exact to the authors' TensorFlow code, with pretrained weights, and the reinforcement-learning cell
search that found it. Start with `nasnet-zoo list` (the models and their weights), `nasnet-zoo predict
nasnet_a_mobile IMAGE` (classify), `nasnet-zoo finetune nasnet_a_mobile DATA` (your data), or `nasnet-zoo search
--out runs/search` (find a cell). `nasnet-zoo COMMAND --help` explains each command."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nasnet-zoo", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of a failure")
    debug = argparse.ArgumentParser(add_help=False)  # --debug also after the command; only when given
    debug.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for c in COMMANDS:
        passthrough = c.name == "bench"  # its options are the benchmark script's own
        p = sub.add_parser(
            c.name, help=c.help, description=c.description or c.help, parents=[*c.parents, debug],
            add_help=not passthrough,
        )  # fmt: skip
        c.arguments(p)
        p.set_defaults(run=c.run, passthrough=passthrough)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if extra and not args.passthrough:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    except SystemExit as e:  # argparse: --help (0) or a wrong command line (2)
        return e.code if isinstance(e.code, int) else 0
    args.extra, args.argv = extra, list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    logging.getLogger("nasnet_zoo").setLevel(logging.INFO)
    try:
        return args.run(args) or 0
    except KeyboardInterrupt:
        again = " (run the same command with --resume to continue)" if getattr(args, "resume", None) is not None else ""
        print(f"interrupted{again}", file=sys.stderr)
        return 130
    except (NasnetZooError, OSError) as e:  # anything else is a bug: its traceback is the report
        if args.debug:
            traceback.print_exc()
        print(f"error: {_message(e)}", file=sys.stderr)
        return 2 if isinstance(e, UsageError) else 1


def _message(e: BaseException) -> str:
    """The error's own message; one raised in a DataLoader worker arrives wrapped in the worker's traceback,
    whose last line is the original ``module.Error: message``."""
    text = str(e)
    if "Original Traceback" in text:
        text = text.strip().splitlines()[-1].split(": ", 1)[-1]
    return text
