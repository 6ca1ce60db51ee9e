"""argparse, with usage errors as one line on stderr (standard library only)."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from ferry.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)
