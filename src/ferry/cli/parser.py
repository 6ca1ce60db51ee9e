"""argparse, with usage errors as one line on stderr (standard library only)."""

from __future__ import annotations

import argparse
import sys
from typing import Any, NoReturn

from ferry import __version__
from ferry.errors import EXIT_USAGE


class Parser(argparse.ArgumentParser):
    """Every program's parser: one-line usage errors, and --version."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_argument("--version", action="version", version=f"%(prog)s {__version__}")

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {message} (see {self.prog} --help)\n")
        sys.exit(EXIT_USAGE)
