"""`python -m ferry relay|send|receive ...`: the same entry point as the `ferry` script."""

import sys

from ferry.cli.main import main

sys.exit(main())
