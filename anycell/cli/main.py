"""The ``anycell`` command line: the same doors as the ROS 2 nodes, on a plain pip install.

Each command is one small function registered with :func:`command`. It parses
its own arguments and imports what it needs lazily, so ``anycell --help``
stays fast and this module never pulls planners, drivers or the simulator in
at import time (see DESIGN.md: the CLI is the one module of ``anycell/`` that
may import the other packages, and only inside the command that needs them).

Every :class:`~anycell.errors.AnycellError` becomes a one-paragraph message and
a non-zero exit code; ``--debug`` shows the traceback as well.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Callable, Dict, List, Optional

from anycell.errors import AnycellError

log = logging.getLogger("anycell")

Handler = Callable[[argparse.Namespace], int]
_COMMANDS: Dict[str, "tuple[str, Callable[[argparse.ArgumentParser], None], Handler]"] = {}

EXIT_OK = 0
EXIT_FAILED = 1   # the work ran but did not succeed (a unit failed inspection, a job aborted)
EXIT_INPUT = 2    # bad input or a refused command
EXIT_PIPE = 141   # the reader of our output went away (128 + SIGPIPE, what Unix tools return)


def command(name: str, help_text: str, arguments: Callable[[argparse.ArgumentParser], None]) -> Callable[[Handler], Handler]:
    """Register a sub-command: its one-line help, an argument builder, and the handler."""

    def register(handler: Handler) -> Handler:
        _COMMANDS[name] = (help_text, arguments, handler)
        return handler

    return register


def _no_args(parser: argparse.ArgumentParser) -> None:
    return None


# ------------------------------------------------------------------ validate


def _validate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("cell", help="cell config (YAML or JSON)")
    p.add_argument("job", nargs="?", help="job spec (YAML or JSON); also checked against the cell")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


@command("validate", "check a cell config (and a job spec) and summarise them", _validate_args)
def _validate(args: argparse.Namespace) -> int:
    from anycell.cell import load_cell
    from anycell.job import load_job
    from anycell.planners.feasibility import check_resources
    from anycell.cli.summary import cell_summary, job_summary

    cell = load_cell(args.cell)
    job = load_job(args.job) if args.job else None
    if job is not None:
        check_resources(cell, job)
    if args.json:
        out = {"cell": cell_summary(cell)}
        if job is not None:
            out["job"] = job_summary(job)
        print(json.dumps(out, indent=2))
        return EXIT_OK
    from anycell.cli.summary import format_cell, format_job

    print(format_cell(cell))
    if job is not None:
        print()
        print(format_job(job))
        print(f"\nOK: job '{job.id}' fits cell '{cell.cell.id}' (parts, processes and stations resolve).")
    else:
        print(f"\nOK: cell '{cell.cell.id}' is valid.")
    return EXIT_OK


# ------------------------------------------------------------------ schema


def _schema_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("which", choices=["cell", "job"], help="which document's schema")
    p.add_argument("-o", "--output", help="write to this file instead of standard output")


@command("schema", "print the JSON Schema of the cell config or the job spec", _schema_args)
def _schema(args: argparse.Namespace) -> int:
    from anycell.schemas import schema_for

    text = json.dumps(schema_for(args.which), indent=2) + "\n"
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
        log.info("wrote %s", args.output)
    else:
        sys.stdout.write(text)
    return EXIT_OK


# ------------------------------------------------------------------ main


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with one sub-parser per registered command."""
    _load_command_modules()
    parser = argparse.ArgumentParser(
        prog="anycell",
        description="anycell: describe a cell once, send it what to make, and it makes it.",
        epilog="Run 'anycell COMMAND --help' for a command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (help_text, arguments, _handler) in _COMMANDS.items():
        sp = sub.add_parser(name, help=help_text, description=help_text)
        arguments(sp)
    return parser


def _load_command_modules() -> None:
    """Import the modules that register more commands (they live beside this one)."""
    import importlib

    for module in COMMAND_MODULES:
        importlib.import_module(module)


#: Modules under anycell/ that register further commands with @command.
COMMAND_MODULES: List[str] = ["anycell.cli.planning", "anycell.cli.simulation", "anycell.cli.operations", "anycell.cli.machines", "anycell.cli.demo"]


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``anycell`` console script.

    When the reader of the output goes away (``anycell validate ... | head``),
    the command stops quietly with :data:`EXIT_PIPE`, as Unix tools do, instead
    of a BrokenPipeError traceback.
    """
    try:
        try:
            code = _main(argv)
        finally:
            sys.stdout.flush()   # a closed pipe shows here, while it can still be caught
        return code
    except BrokenPipeError:
        _drop_stdout()
        return EXIT_PIPE


def _drop_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's flush at exit does not fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _main(argv: Optional[List[str]]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else (logging.WARNING if args.quiet else logging.INFO),
        format="%(levelname)s %(name)s: %(message)s" if args.debug else "%(message)s",
    )
    for noisy in ("asyncua", "PIL", "matplotlib"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if args.debug else logging.ERROR)
    if not args.command:
        parser.print_help()
        return EXIT_INPUT
    _help, _arguments, handler = _COMMANDS[args.command]
    try:
        return handler(args)
    except AnycellError as exc:
        if args.debug:
            log.exception("failed")
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT if _is_input_error(exc) else EXIT_FAILED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _is_input_error(exc: AnycellError) -> bool:
    from anycell.errors import ConfigError, InfeasibleError, StateError

    return isinstance(exc, (ConfigError, InfeasibleError, StateError))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
