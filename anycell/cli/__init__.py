"""The ``anycell`` command line, on top of every other package.

One module per command family: :mod:`.main` (the parser, ``validate``,
``schema``), :mod:`.planning` (``plan``, ``quote``), :mod:`.simulation`
(``sim``), :mod:`.operations` (``up``, ``submit``, ``status``, PackML
commands), :mod:`.machines` (``machine``) and :mod:`.demo`. Each command
imports the packages it drives inside its handler, so ``anycell --help`` starts
fast and no lower layer ever imports the CLI.
"""

from anycell.cli.main import main

__all__ = ["main"]
