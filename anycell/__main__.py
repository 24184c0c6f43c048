"""`python -m anycell` is the same as the `anycell` command."""

import sys

from anycell.cli.main import main

sys.exit(main())
