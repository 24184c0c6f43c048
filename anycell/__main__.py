"""`python -m anycell` is the same as the `anycell` command."""

import sys

from anycell.cli import main

sys.exit(main())
