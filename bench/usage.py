"""``--help`` for the benchmark scripts: each prints its own docstring (what it measures, against
what, how to run it) and takes the options it names."""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence, Tuple


def bench_args(doc: Optional[str], options: Sequence[Tuple[str, str]] = (),
               argv: Optional[Sequence[str]] = None,
               values: Sequence[Tuple[str, str, str]] = ()) -> argparse.Namespace:
    """Parse the command line of a benchmark: ``--help`` shows ``doc``; ``options`` are on/off
    flags as (name, help); ``values`` are options that take one value, as (name, metavar, help),
    absent = None (a peer's source folder, say, that only the user can supply)."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    for name, text in options:
        parser.add_argument(name, action="store_true", help=text)
    for name, metavar, text in values:
        parser.add_argument(name, metavar=metavar, default=None, help=text)
    return parser.parse_args(sys.argv[1:] if argv is None else argv)
