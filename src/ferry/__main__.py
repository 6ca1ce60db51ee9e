"""`python -m ferry relay|send|receive ...`: the same entry point as the `ferry` script."""

import sys

from ferry.cli.launcher import MODULE
from ferry.cli.main import main

sys.exit(main(launcher=MODULE))
