"""`python -m dmon.cli` runs the `dmon` command."""

import sys

from dmon.cli import main

sys.exit(main())
